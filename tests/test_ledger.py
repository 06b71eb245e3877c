"""The write-ahead ledger (connectors/state/ledger.py) and the snapshot commit (braze_migrate/commit/committer.py)."""

import polars as pl

from braze_migrate.commit.committer import commit_run
from connectors.braze.outcomes import BatchResult, ObjectError
from connectors.state.ledger import Ledger
from connectors.state.snapshot import Snapshot


def result(batch_no, status="acknowledged", errors=(), pending=(), in_doubt=False):
    return BatchResult(batch_no, status, list(errors), list(pending), in_doubt, 1, 0, 0, {"201": 1})


def test_batch_is_sending_before_result_and_acknowledged_after(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    run = led.new_run("backfill", "src", "fp", {})
    led.add_batches(run, [(0, False, 2), (1, True, 3)])
    led.mark_sending(run, 0)
    assert Ledger(tmp_path / "ledger.sqlite").batch_statuses(run) == {0: "sending", 1: "planned"}
    led.record_result(run, result(0, errors=[ObjectError("attributes", 1, "EMAIL_BAD_FORMAT")]))
    assert led.batch_statuses(run)[0] == "acknowledged"
    assert led.outcomes(run) == [(0, "attributes", 1, "rejected", "EMAIL_BAD_FORMAT")]


def test_unfinished_run_is_found_until_committed(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    run = led.new_run("sync", "src", "fp", {"batch_size": 75})
    led.set_run_status(run, "loading")
    assert led.unfinished_run().run_id == run
    led.set_run_status(run, "committed", {"status": "completed"})
    assert led.unfinished_run() is None
    assert led.run(run).summary == {"status": "completed"}


def _plan(tmp_path, objects, users_next=None):
    plan = tmp_path / "plan"
    (plan / "objects").mkdir(parents=True)
    (plan / "users_next").mkdir()
    pl.DataFrame(objects, schema={"dataset": pl.Utf8, "array": pl.Utf8, "key": pl.Utf8, "external_id": pl.Utf8,
                                  "fingerprint": pl.UInt64, "data_points": pl.Int64, "_file": pl.Utf8,
                                  "_row": pl.Int64, "batch_no": pl.Int64, "index": pl.Int64}).write_parquet(
        plan / "objects" / "part-00000.parquet")
    if users_next is not None:
        pl.DataFrame(users_next).write_parquet(plan / "users_next" / "part-00000.parquet")
    return plan


def test_snapshot_advances_only_for_acknowledged_objects(tmp_path):
    objs = [
        {"dataset": "users", "array": "attributes", "key": "u1", "external_id": "u1", "fingerprint": 1,
         "data_points": 1, "_file": "f", "_row": 1, "batch_no": 0, "index": 0},
        {"dataset": "users", "array": "attributes", "key": "u2", "external_id": "u2", "fingerprint": 2,
         "data_points": 1, "_file": "f", "_row": 2, "batch_no": 0, "index": 1},
        {"dataset": "purchases", "array": "purchases", "key": "p1", "external_id": "u1", "fingerprint": 3,
         "data_points": 1, "_file": "f", "_row": 1, "batch_no": 0, "index": 0},
        {"dataset": "purchases", "array": "purchases", "key": "p2", "external_id": "u3", "fingerprint": 4,
         "data_points": 1, "_file": "f", "_row": 2, "batch_no": 1, "index": 0},
    ]
    plan = _plan(tmp_path, objs, {"external_id": ["u1", "u2"], "city": ['"Oslo"', '"Rome"']})
    led = Ledger(tmp_path / "ledger.sqlite")
    snap = Snapshot(tmp_path)
    run = led.new_run("backfill", "src", "fp", {})
    led.add_batches(run, [(0, True, 3), (1, True, 1)])
    led.mark_sending(run, 0)
    led.mark_sending(run, 1)
    led.record_result(run, result(0, errors=[ObjectError("attributes", 1, "EMAIL_BAD_FORMAT")]))
    led.record_result(run, result(1, status="pending", pending=[("purchases", 0)], in_doubt=True))
    outcome = commit_run(run, plan, led, snap, in_doubt_policy="skip")
    assert dict(zip(outcome["key"], outcome["outcome"])) == {
        "u1": "acknowledged", "u2": "rejected", "p1": "acknowledged", "p2": "pending"}
    assert snap.scan("users").collect().to_dicts() == [{"external_id": "u1", "city": '"Oslo"'}]
    assert snap.scan("purchases").collect()["key"].to_list() == ["p1"]
    held = snap.scan("held").collect().select("key", "status").sort("key").to_dicts()
    assert held == [{"key": "p2", "status": "in_doubt"}, {"key": "u2", "status": "rejected"}]
    # Committing again changes nothing.
    commit_run(run, plan, led, snap, in_doubt_policy="skip")
    assert snap.scan("users").collect().height == 1 and snap.scan("held").collect().height == 2


def test_objects_not_listed_pending_in_a_finished_pending_batch_are_acknowledged(tmp_path):
    objs = [
        {"dataset": "users", "array": "attributes", "key": "u1", "external_id": "u1", "fingerprint": 1,
         "data_points": 1, "_file": "f", "_row": 1, "batch_no": 0, "index": 0},
        {"dataset": "events", "array": "events", "key": "e1", "external_id": "u1", "fingerprint": 2,
         "data_points": 1, "_file": "f", "_row": 1, "batch_no": 0, "index": 0},
        {"dataset": "events", "array": "events", "key": "e2", "external_id": "u2", "fingerprint": 3,
         "data_points": 1, "_file": "f", "_row": 2, "batch_no": 1, "index": 0},
    ]
    plan = _plan(tmp_path, objs, {"external_id": ["u1"], "city": ['"Oslo"']})
    led = Ledger(tmp_path / "ledger.sqlite")
    run = led.new_run("backfill", "src", "fp", {})
    led.add_batches(run, [(0, True, 2), (1, True, 1)])
    led.mark_sending(run, 0)
    led.record_result(run, result(0, status="pending", pending=[("events", 0)], in_doubt=True))
    led.mark_sending(run, 1)  # killed while sending: no outcome known
    outcome = commit_run(run, plan, led, Snapshot(tmp_path), in_doubt_policy="skip")
    assert dict(zip(outcome["key"], outcome["outcome"])) == {"u1": "acknowledged", "e1": "pending", "e2": "pending"}
