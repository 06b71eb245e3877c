"""Tonight's export: templates filled with the logical date, waiting for the readiness marker (clock and sleep
injected: no test sleeps), the manifest's files checked, and an export loaded once only."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from braze_migrate.cli.main import main
from connectors import readiness
from connectors.readiness import ExportIncomplete, ExportNotReady, TemplateError
from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parent.parent
DAY1 = ROOT / "data/samples/day1"


def test_templates_take_the_logical_date_in_any_format():
    night = date(2026, 12, 7)
    assert readiness.resolve("s3://bucket/braze/{date:%Y-%m-%d}/", night) == "s3://bucket/braze/2026-12-07/"
    assert readiness.resolve("exports/{date}", night) == "exports/2026-12-07"
    assert readiness.resolve("exports/{yesterday:%Y/%m/%d}/", night) == "exports/2026/12/06/"
    assert readiness.resolve("exports/{date:%Y%m%d}-{yesterday:%d}", date(2027, 1, 1)) == "exports/20270101-31"
    assert readiness.resolve("exports/fixed", night) == "exports/fixed"
    assert readiness.is_template("x/{date}") and not readiness.is_template("x/y")


@pytest.mark.parametrize("bad", ["exports/{day}", "exports/{date!r}", "exports/{date"])
def test_a_wrong_token_is_one_line_naming_the_tokens(bad):
    with pytest.raises(TemplateError) as err:
        readiness.resolve(bad, date(2026, 12, 7))
    assert bad in str(err.value) and "\n" not in str(err.value)


class Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_waits_for_the_marker_then_returns_how_long(tmp_path):
    clock, seen = Clock(), []
    folder = tmp_path / "2026-12-07"

    def probe(source, marker):  # the warehouse writes the folder and its marker after 30 s
        if clock.now >= 30:
            folder.mkdir(exist_ok=True)
            (folder / marker).write_text("")
        return readiness.read_marker(source, marker)

    ready = readiness.wait_ready(str(folder), "_SUCCESS", deadline_s=600, poll_s=10, clock=clock,
                                 sleep=clock.sleep, probe=probe, on_wait=lambda w, d, what: seen.append((w, what)))
    assert ready.waited_s == 30 and ready.marker == "_SUCCESS"
    assert clock.sleeps == [10, 10, 10]
    assert seen[0] == (0, "waiting for _SUCCESS") and seen[-1] == (30, "_SUCCESS found")


def test_past_the_deadline_it_is_one_line(tmp_path):
    clock = Clock()
    with pytest.raises(ExportNotReady) as err:
        readiness.wait_ready(str(tmp_path / "never"), "_SUCCESS", deadline_s=95, poll_s=30, clock=clock,
                             sleep=clock.sleep)
    assert clock.now == 95 and clock.sleeps == [30, 30, 30, 5]  # the last look is at the deadline
    message = str(err.value)
    assert "never/_SUCCESS did not appear within 1 min 35 s" in message and "\n" not in message


def test_no_marker_reads_the_source_as_it_is(tmp_path):
    ready = readiness.wait_ready(str(tmp_path), None, deadline_s=0, poll_s=1, sleep=pytest.fail)
    assert ready.marker is None and ready.waited_s == 0


def manifest_for(folder: Path) -> dict:
    files = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("_")):
        rel = f.relative_to(folder).as_posix()
        files.append({"path": rel, "rows": readiness.count_rows(str(f)),
                      "sha256": hashlib.sha256(f.read_bytes()).hexdigest()})
    return {"files": files}


@pytest.fixture
def export(tmp_path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(DAY1, folder)
    (folder / "_manifest.json").write_text(json.dumps(manifest_for(folder)))
    return folder


def test_a_complete_export_matches_its_manifest(export):
    ready = readiness.wait_ready(str(export), "_manifest.json", deadline_s=0, poll_s=1)
    assert len(ready.files) == 5 and "5 files checked" in ready.line
    assert {f.rows for f in ready.files if f.path == "users.parquet"} == {pl.read_parquet(DAY1 / "users.parquet").height}


def test_a_truncated_export_is_refused(export):
    csv = export / "purchases.csv"
    csv.write_bytes(csv.read_bytes()[: len(csv.read_bytes()) // 2])
    with pytest.raises(ExportIncomplete) as err:
        readiness.wait_ready(str(export), "_manifest.json", deadline_s=0, poll_s=1)
    assert "purchases.csv does not match its checksum" in str(err.value) and "refused" in str(err.value)


def test_row_counts_are_checked_and_a_named_file_must_exist(export):
    manifest = json.loads((export / "_manifest.json").read_text())
    for f in manifest["files"]:
        f.pop("sha256")
    users = next(f for f in manifest["files"] if f["path"] == "users.parquet")
    users["rows"] += 1
    (export / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportIncomplete, match=r"users.parquet holds [\d,]+ rows, .* says"):
        readiness.wait_ready(str(export), "_manifest.json", deadline_s=0, poll_s=1)
    users["rows"] -= 1
    (export / "events.ndjson").unlink()
    (export / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportIncomplete, match="events.ndjson, named in .* is missing"):
        readiness.wait_ready(str(export), "_manifest.json", deadline_s=0, poll_s=1)


@pytest.mark.parametrize("body", [b"{", b'{"files": []}', b'{"files": [{"rows": 3}]}'])
def test_a_broken_manifest_says_what_it_expects(export, body):
    (export / "_manifest.json").write_bytes(body)
    with pytest.raises(ExportIncomplete) as err:
        readiness.wait_ready(str(export), "_manifest.json", deadline_s=0, poll_s=1)
    assert "_manifest.json" in str(err.value) and "\n" not in str(err.value)


def test_cli_fills_the_template_waits_and_loads_once(sandbox, monkeypatch, tmp_path, capsys):
    """`--date` fills the template; with a marker the run reads the folder once it is complete; the same export
    again sends nothing and says since which run."""
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", sandbox.url)
    monkeypatch.setenv("BRAZE_API_KEY", API_KEY)
    shutil.copytree(DAY1, tmp_path / "exports" / "2026-12-07")
    (tmp_path / "exports" / "2026-12-07" / "_SUCCESS").write_text("")
    template = str(tmp_path / "exports" / "{date:%Y-%m-%d}")
    args = ["sync", template, "--date", "2026-12-07", "--state", str(tmp_path / "state"), "--no-prefect",
            "--ready-marker", "_SUCCESS", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["source"].endswith("2026-12-07") and first["requests"] > 0
    assert first["export"].endswith("_SUCCESS found after 0 s of waiting")
    sent = sandbox.stats()["objects"]

    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["unchanged_since"] == first["run_id"] and again["requests"] == 0
    assert sandbox.stats()["objects"] == sent  # nothing sent (the key's preflight check aside)

    assert main([*args[:-1]]) == 0  # and the text report flags it
    assert f"UNCHANGED since run {first['run_id']}: nothing sent" in capsys.readouterr().out


def test_cli_marker_that_never_comes_is_one_line(sandbox, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", sandbox.url)
    monkeypatch.setenv("BRAZE_API_KEY", API_KEY)
    code = main(["sync", str(tmp_path / "exports/{date}"), "--date", "2026-12-07", "--state", str(tmp_path / "s"),
                 "--no-prefect", "--ready-marker", "_SUCCESS", "--ready-deadline", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "2026-12-07/_SUCCESS did not appear within 0 s" in err[0], err
