"""(d) Peak RSS of planning, each plan in a fresh child process (`bench.plan_child`).

The child reports its own high-water mark (`VmHWM`), so the figure is the plan's alone. Neither its
`ru_maxrss` nor this process's `RUSAGE_CHILDREN` would do: Linux carries the parent's high-water mark into a
spawned child, so after the 1M-user naive plan (~3.5 GB here) every child would report at least that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.data import ROOT

GB = 1e9
TARGET_BYTES = 3 * GB


def plan_peak(source: Path, state: Path, plan_dir: Path, *, trace: bool = False, timeout: float = 3600,
              batch_mode: str = "combined") -> dict:
    """Plan `source` against `state` in a child process; its time, peak RSS and (with `trace`) peak per line."""
    shutil.rmtree(plan_dir, ignore_errors=True)
    command = [sys.executable, "-m", "bench.plan_child", str(source), str(state), str(plan_dir)]
    if trace:
        command.append("--trace")
    command += ["--batch-mode", batch_mode]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RuntimeError(f"planning {source} failed: {last[0]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(plan_dir, ignore_errors=True)
    report["under_target"] = report["peak_rss_bytes"] < TARGET_BYTES
    return report
