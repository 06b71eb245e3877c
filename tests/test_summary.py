"""The typed run summary: `--json` keeps the keys scripts read from the untyped summary, the ledger's stored
JSON reads back as the same summary, and the CLI text and the Prefect report render it (counts only)."""

from __future__ import annotations

import json

from braze_migrate.reporting.terminal import render_text
from braze_migrate.summary import RunStatus, RunSummary

# The keys of the summary before it was typed (tests, scripts/demo.py and users' scripts read them).
KEYS = {"run_id", "kind", "source", "state", "status", "resumed", "requests", "batches", "acknowledged_batches",
        "retries", "throttled", "in_doubt", "datasets", "data_points", "requests_full_resend", "rejects_file",
        "rejects", "duration_s", "notes", "resume_command"}
BUCKETS = {"read", "acknowledged", "rejected", "unchanged", "pending", "rejected_cells"}


def summary(**changes) -> RunSummary:
    return RunSummary.model_validate({
        "run_id": "20261202T000000-abcdef", "kind": "sync", "source": "exports/day2", "state": "/srv/state",
        "status": "incomplete", "requests": 4, "batches": 4, "acknowledged_batches": 3,
        "in_doubt": [{"batch_no": 2, "events": 1, "purchases": 0, "action": "1 events/purchases held as pending"}],
        "datasets": {"users": {"read": 5, "acknowledged": 3, "rejected": 1, "unchanged": 0, "pending": 1,
                               "rejected_cells": 2}},
        "data_points": {"sent": 9, "full_resend": 20}, "rejects_file": "/srv/state/runs/x/rejects.csv",
        "rejects": 3, "resume_command": "braze-migrate sync exports/day2 --state /srv/state", **changes})


def test_json_keeps_the_keys_and_plain_values():
    data = summary().to_json()
    assert KEYS <= set(data)
    assert set(data["datasets"]["users"]) >= BUCKETS
    assert data["status"] == "incomplete" and data["kind"] == "sync"
    assert json.loads(json.dumps(data)) == data  # plain JSON values only
    assert "workers" not in data and "drained_batches" not in data  # parallel-only keys appear when set
    assert "workers" in summary(workers=[], drained_batches=0).to_json()


def test_the_stored_json_reads_back_as_the_same_summary():
    s = summary()
    again = RunSummary.coerce(json.loads(json.dumps(s.to_json())))
    assert again == s and again.status is RunStatus.INCOMPLETE
    assert again.total("read") == 5 and again.total("pending") == 1


def test_status_values_are_the_strings_users_compare():
    assert {s.value for s in RunStatus} >= {"completed", "incomplete", "interrupted"}
    assert summary(status="completed").ok and not summary().ok


def test_cli_text_renders_a_summary_or_its_json():
    s = summary()
    text = render_text(s)
    assert text == render_text(s.to_json())
    assert "INCOMPLETE" in text and "to resume: braze-migrate sync" in text and "in doubt: batch 2" in text


def test_prefect_report_renders_the_same_summary():
    from flows.artifacts import bucket_rows, headline, report_markdown

    s = summary()
    assert bucket_rows(s)[-1] == {"dataset": "total", "read": 5, "acknowledged": 3, "rejected": 1,
                                  "unchanged": 0, "pending": 1, "rejected_cells": 2}
    assert headline(s).startswith("incomplete: 3 of 5 rows acknowledged")
    report = report_markdown(s, "sync/nightly-sync")
    assert "`braze-migrate sync exports/day2 --state /srv/state`" in report
    assert "prefect deployment run 'sync/nightly-sync'" in report and "batch 2" in report


def test_the_reject_warning_tells_erasures_apart_from_rows_to_fix_in_the_warehouse():
    from flows.artifacts import report_markdown

    erased_only = report_markdown(summary(status="completed", resume_command=None, erased=3,
                                          datasets={"users": {"read": 5, "acknowledged": 2, "rejected": 3}}))
    assert "fix them in the warehouse" not in erased_only
    assert "3 rows belong to users deleted from Braze" in erased_only
    assert "braze-migrate undelete ID --state /srv/state" in erased_only
    mixed = report_markdown(summary(erased=1))  # 1 rejected row (an erasure) and 2 rejected cells
    assert "**Warning:** 2 rows or cells were rejected" in mixed and "fix them in the warehouse" in mixed
    assert "1 rows belong to users deleted from Braze" in mixed
    assert "3 rows or cells were rejected" in report_markdown(summary())  # no erasure: as before
