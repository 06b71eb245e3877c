"""What a person sees while a run happens: a live bar with rate and ETA on a terminal (a real pseudo-terminal
here), periodic plain lines on stderr when not a terminal, and with `--json` nothing on stdout but the summary."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from tests.exports import bulk_export, write_export

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_on_a_terminal(args: list[str], env: dict, timeout: float = 240) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (what a person at a shell has) and stdout on a pipe;
    returns the exit code, stdout, and everything the terminal was sent."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "braze_migrate.cli.main", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    screen = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise AssertionError(f"no output for {timeout} s: {screen[-2000:]!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            screen += chunk
    finally:
        os.close(master)
    out = proc.stdout.read().decode()
    return proc.wait(timeout=60), out, screen.decode(errors="replace")


def frames(screen: str, stage: str) -> list[str]:
    """The lines the terminal showed for one stage, control sequences removed."""
    text = ANSI.sub("", screen)
    return [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip().startswith(stage)]


def test_a_terminal_shows_rate_and_eta_while_planning_and_while_loading(braze_env, tmp_path):
    # 2,000 users with a purchase and an event each, planned 100 users per unit (60 units), loaded at 40
    # requests/s (80 requests): each stage lasts long enough for several redraws on any machine.
    src = bulk_export(tmp_path / "export", 2000)
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"}
    code, out, screen = run_on_a_terminal(
        ["backfill", str(src), "--state", str(tmp_path / "state"), "--no-prefect", "--rate-limit", "40/1s",
         "--users-per-partition", "100"], env)
    assert code == 0, screen[-3000:]
    eta = re.compile(r"ETA \d+:\d\d")
    planning = [f for f in frames(screen, "planning") if re.search(r"[\d.]+ units/s", f) and eta.search(f)]
    loading = [f for f in frames(screen, "loading")
               if re.search(r"[\d.]+ batches/s", f) and eta.search(f) and "objects" in f and "throttled" in f]
    assert planning, frames(screen, "planning")
    assert loading, frames(screen, "loading")
    assert any(re.search(r"\d+/\d+ units", f) for f in planning)
    assert any(re.search(r"\d+/\d+ batches", f) for f in loading)
    assert "COMPLETED" in out and "ETA" not in out  # progress never reaches stdout


def test_json_stdout_is_one_object_while_progress_lines_go_to_stderr(braze_env, tmp_path):
    src = write_export(tmp_path / "export", "parquet")
    env = {**os.environ, "BRAZE_MIGRATE_PROGRESS_SECONDS": "0.2"}
    done = subprocess.run(
        [sys.executable, "-m", "braze_migrate.cli.main", "backfill", str(src), "--state", str(tmp_path / "state"), "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # the whole of stdout: one JSON object and nothing else
    assert isinstance(summary, dict) and summary["status"] == "completed"
    assert done.stdout.count("\n") == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("[braze-migrate] ")]
    for stage in ("reading", "planning", "loading", "committing"):
        assert any(line.startswith(f"[braze-migrate] {stage}: ") for line in lines), (stage, done.stderr[-3000:])
    assert any("batches" in line and "objects" in line and "done" in line for line in lines
               if line.startswith("[braze-migrate] loading"))
