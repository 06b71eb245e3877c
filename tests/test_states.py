"""Typed states (connectors/states.py): the transition table, and every ledger write checked against it."""

from __future__ import annotations

import pytest

from connectors.braze.deletes import DeleteResult
from connectors.braze.outcomes import BatchResult
from connectors.state.ledger import Ledger
from connectors.states import (
    TRANSITIONS,
    BatchState,
    IllegalTransition,
    RequestState,
    RunState,
    check,
    sources,
)


def result(batch_no, status):
    return BatchResult(batch_no, status, [], [("events", 0)] if status == "pending" else [], False, 1, 0, 0, {})


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    yield led
    led.close()


def test_the_table_names_every_state_of_each_kind():
    for kind, table in TRANSITIONS.items():
        assert set(table) == set(kind) and all(set(t) <= set(kind) for t in table.values())


def test_the_claim_statements_move_only_where_the_table_allows():
    # claim, release and mark_sending(owner) are single statements with their legal states written in
    # (connectors/state/ledger_base.py); they must agree with the table.
    assert {"planned", "claimed", "sending"} <= set(sources(BatchState.CLAIMED))
    assert "claimed" in sources(BatchState.PLANNED) and "claimed" in sources(BatchState.SENDING)


def test_an_illegal_run_transition_raises_and_writes_nothing(ledger):
    run = ledger.new_run("sync", "src", "fp", {})
    ledger.set_run_status(run, RunState.ABANDONED)
    with pytest.raises(IllegalTransition, match="abandoned → loading"):
        ledger.set_run_status(run, RunState.LOADING)
    assert ledger.run(run).status is RunState.ABANDONED


def test_an_acknowledged_batch_never_becomes_pending(ledger):
    run = ledger.new_run("sync", "src", "fp", {})
    ledger.add_batches(run, [(0, True, 1)])
    with pytest.raises(IllegalTransition, match="planned → acknowledged"):
        ledger.record_result(run, result(0, "acknowledged"))  # never sent: no answer can exist
    ledger.mark_sending(run, 0)
    ledger.record_result(run, result(0, "acknowledged"))
    with pytest.raises(IllegalTransition, match="acknowledged → pending"):
        ledger.record_result(run, result(0, "pending"))
    with pytest.raises(IllegalTransition, match="acknowledged → sending"):
        ledger.mark_sending(run, 0)
    assert ledger.batch_statuses(run) == {0: BatchState.ACKNOWLEDGED} and ledger.outcomes(run) == []


def test_a_final_delete_request_is_never_sent_again(ledger):
    ledger.add_delete_batches("r", [(0, 2)])
    ledger.mark_delete_sending("r", 0)
    ledger.record_delete_result("r", 0, DeleteResult(RequestState.ACKNOWLEDGED, requests=1, deleted=2), ["a", "b"])
    with pytest.raises(IllegalTransition, match="acknowledged → sending"):
        ledger.mark_delete_sending("r", 0)
    assert ledger.deleted_users(committed=False) == ["a", "b"]


def test_check_names_unknown_states():
    with pytest.raises(IllegalTransition, match="unknown state 'sent'"):
        check("sent", BatchState.SENDING)
