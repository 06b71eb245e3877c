"""Issue 13 points 2, 3, 6, 7 and 9 as a user meets them: one line and its own exit code for every state or
endpoint problem, a private state folder, files of the export named when not read, limits that change."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from tests.cli_run import BIN, acknowledged_batches, run_cli
from tests.conftest import API_KEY
from tests.exports import bulk_export, write_export

EXIT_PENDING, EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_DAMAGED, EXIT_UNUSABLE = 1, 2, 3, 5, 6


run = run_cli


def one_line(done) -> str:
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("[braze-migrate]")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def backfilled(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    done = run("backfill", write_export(tmp_path / "export", "parquet"), "--state", state, "--no-prefect")
    assert done.returncode == 0, done.stderr[-2000:]
    return state


@pytest.fixture(scope="module")
def template(tmp_path_factory, sandbox_server):
    """One backfilled state folder (and its export) for the tests that damage a copy of it."""
    root = tmp_path_factory.mktemp("template")
    env = {**os.environ, "BRAZE_REST_ENDPOINT": sandbox_server.url, "BRAZE_API_KEY": API_KEY}
    done = run("backfill", write_export(root / "export", "parquet"), "--state", root / "state", "--no-prefect",
               env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


# --- point 9: damaged state, its own exit code, never "export it again" -------------------------------------


@pytest.mark.parametrize("damage", ["events.parquet", "ledger", "snapshot part", "meta.json"])
def test_a_damaged_state_folder_is_one_line_with_exit_5(braze_env, template, tmp_path, damage):
    import shutil

    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    state = tmp_path / "state"
    if damage == "ledger":
        (state / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
        for extra in state.glob("ledger.sqlite-*"):
            extra.unlink()
    elif damage == "snapshot part":
        part = next((state / "snapshot" / "users").glob("*.parquet"))
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    elif damage == "meta.json":
        (state / "snapshot" / "meta.json").write_text("\x00\x01garbage")
    else:  # a bad restore or a cleanup script: the next sync would resend every acknowledged event
        (state / "snapshot" / "events.parquet").unlink()
    before = braze_env.profiles()
    done = run("sync", tmp_path / "export", "--state", state, "--no-prefect")
    assert done.returncode == EXIT_DAMAGED, done.stderr
    line = one_line(done)
    assert "export it again" not in line and ("restore" in line or "repair" in line)
    assert braze_env.profiles() == before  # nothing sent


def test_a_full_disk_is_one_line_with_exit_6(braze_env, tmp_path, monkeypatch, capsys):
    from braze_migrate.cli.main import main

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    src = write_export(tmp_path / "export", "parquet")
    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    code = main(["backfill", str(src), "--state", str(tmp_path / "s"), "--no-prefect"])
    err = capsys.readouterr().err
    assert code == EXIT_UNUSABLE and "no space left" in err and "export it again" not in err


def test_an_unwritable_rejects_file_is_one_line_with_exit_6(braze_env, tmp_path, monkeypatch, capsys):
    from braze_migrate.cli.main import main
    from braze_migrate.commit import accounting as report

    def denied(plan_dir, outcome, path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(report, "write_rejects", denied)
    code = main(["backfill", str(write_export(tmp_path / "export", "parquet")), "--state", str(tmp_path / "s"),
                 "--no-prefect"])
    err = capsys.readouterr().err
    assert code == EXIT_UNUSABLE and "rejects.csv" in err and "chmod" in err


def test_a_file_where_the_state_folder_should_be_is_one_line(braze_env, tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    done = run("backfill", write_export(tmp_path / "export", "parquet"), "--state", blocker / "inner",
               "--no-prefect")
    assert done.returncode == EXIT_UNUSABLE and "--state" in one_line(done)


# --- point 3 and 9: a wait for permits gives way to SIGINT; a deleted plan is named ---------------------------


acknowledged = acknowledged_batches


def test_sigint_while_waiting_for_rate_permits_exits_3_within_seconds_then_a_lost_plan_is_named(braze_env, tmp_path):
    src = bulk_export(tmp_path / "export", 20)
    state = tmp_path / "state"
    proc = subprocess.Popen([str(BIN), "backfill", str(src), "--state", str(state), "--no-prefect",
                             "--rate-limit", "1/60s", "--batch-size", "5", "--concurrency", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while acknowledged(state) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert acknowledged(state) >= 1, "the first batch never went out"
    time.sleep(0.5)  # now waiting for the next window's permit (a minute away)
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    assert time.monotonic() - interrupted < 30  # not the minute of the window; measured about 1 s
    assert "Traceback" not in err and "braze-migrate backfill" in out + err
    # The plan of this unfinished run is deleted by mistake: named, never a KeyError.
    run_dir = next((state / "runs").iterdir())
    import shutil

    shutil.rmtree(run_dir / "plan")
    again = run("backfill", src, "--state", state, "--no-prefect")
    assert again.returncode == EXIT_DAMAGED and "is gone" in one_line(again)
    fixed = run("repair", "--state", state)
    assert fixed.returncode == EXIT_DAMAGED and "restore" in one_line(fixed)


def test_a_changed_rate_limit_does_not_hang(braze_env, tmp_path):
    src = write_export(tmp_path / "export", "parquet")
    state = tmp_path / "state"
    assert run("backfill", src, "--state", state, "--no-prefect", "--rate-limit", "40/1s").returncode == 0
    more = bulk_export(tmp_path / "more", 30)
    started = time.monotonic()
    done = run("backfill", more, "--state", state, "--no-prefect", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 90


# --- point 2: an endpoint that is not Braze -------------------------------------------------------------------


class _Redirect(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(301)
        self.send_header("Location", "https://rest.iad-01.braze.com/users/track")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_redirecting_endpoint_shows_its_cause_and_sends_nothing(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "BRAZE_REST_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
               "BRAZE_API_KEY": API_KEY}
        done = run("backfill", write_export(tmp_path / "export", "parquet"), "--state", tmp_path / "s",
                   "--no-prefect", env=env)
    finally:
        server.shutdown()
        server.server_close()
    line = one_line(done)
    assert done.returncode == EXIT_CONFIG and "301" in line and "https://rest.iad-01.braze.com/users/track" in line
    assert API_KEY not in done.stderr


# --- point 6: every file read or named ------------------------------------------------------------------------


def test_unknown_files_are_a_warning_and_an_error_under_strict(braze_env, tmp_path):
    src = write_export(tmp_path / "export", "csv")
    (src / "orders.csv").write_text("order_id\n1\n")
    strict = run("backfill", src, "--state", tmp_path / "s1", "--no-prefect", "--strict")
    assert strict.returncode == EXIT_CONFIG and "orders.csv" in one_line(strict)
    done = run("backfill", src, "--state", tmp_path / "s2", "--no-prefect", "--json")
    assert done.returncode == 0
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert [Path(u["path"]).name for u in summary["unread"]] == ["orders.csv"]
    assert any("orders.csv" in n for n in summary["notes"])


# --- point 7: personal data at rest -----------------------------------------------------------------------------


def test_the_state_folder_is_private_and_request_bodies_go_at_commit(braze_env, tmp_path):
    old = tmp_path / "state"
    old.mkdir(mode=0o755)
    (old / "leftover.txt").write_text("x")
    os.chmod(old / "leftover.txt", 0o644)
    state = backfilled(tmp_path)
    for path in [state, *state.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))
    plan = next((state / "runs").iterdir()) / "plan"
    assert not (plan / "batches").exists() and list((plan / "objects").glob("*.parquet"))
    assert not list(plan.glob("units/carry-*"))


def test_bodies_are_kept_for_the_retention_days(braze_env, tmp_path):
    state = tmp_path / "state"
    done = run("backfill", write_export(tmp_path / "export", "parquet"), "--state", state, "--no-prefect",
               "--plan-retention-days", "30")
    assert done.returncode == 0
    assert list((next((state / "runs").iterdir()) / "plan" / "batches").glob("*.parquet"))


def test_a_csv_parse_error_never_shows_a_cell_value(braze_env, tmp_path):
    src = tmp_path / "export"
    src.mkdir()
    (src / "users.csv").write_text('external_id,email\n1,a@example.com\n2,"jane.doe@example.com,x\n')
    done = run("backfill", src, "--state", tmp_path / "s", "--no-prefect")
    assert done.returncode == EXIT_CONFIG
    assert "jane" not in done.stderr and "example.com" not in done.stderr and "users.csv" in one_line(done)
