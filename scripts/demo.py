"""`make demo`: start the bundled sandbox, backfill day 1 and sync day 2 through the Prefect flows, stop.

Uses a fresh `.demo-state` folder each time so the demo is repeatable; prints each run's summary and the
path of its rejects file, then what the nightly delta saved against a full resend.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STATE = ROOT / ".demo-state"
KEY = "demo-sandbox-key"


def start_sandbox() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(BIN / "braze-migrate"), "sandbox", "--port", "0", "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for _ in range(50):
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", line or "")
        if m:
            return proc, m.group(0)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the sandbox did not start; run `.venv/bin/braze-migrate sandbox --port 0` to see why")


def run(step: str, source: str, env: dict) -> dict:
    print(f"\n$ braze-migrate {step} {source} --state {STATE.relative_to(ROOT)}", flush=True)
    cmd = [str(BIN / "braze-migrate"), step, source, "--state", str(STATE), "--json"]
    done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    if not done.stdout.strip():
        raise SystemExit(f"{step} failed (exit {done.returncode}) without a summary")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    from braze_migrate.reporting.terminal import render_text

    print(render_text(summary), flush=True)
    if done.returncode not in (0,):
        raise SystemExit(f"{step} ended {summary['status']} (exit {done.returncode})")
    return summary


def main() -> int:
    shutil.rmtree(STATE, ignore_errors=True)
    proc, url = start_sandbox()
    print(f"sandbox: {url}", flush=True)
    env = {**os.environ, "BRAZE_REST_ENDPOINT": url, "BRAZE_API_KEY": KEY}
    try:
        run("backfill", "data/samples/day1", env)
        nightly = run("sync", "data/samples/day2", env)
        dp = nightly["data_points"]
        print(
            f"\nnightly delta: {nightly['requests']} requests and {dp['sent']} data points, "
            f"against at least {nightly['requests_full_resend']} requests and {dp['full_resend']} data points "
            f"for a full resend of day 2"
        )
        print(f"rejects of the backfill and the sync: {STATE.relative_to(ROOT)}/runs/*/rejects.csv")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
