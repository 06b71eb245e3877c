"""The states of runs, batches, delete and catalog requests, and the outcomes of objects, with the legal
transitions in one table (`TRANSITIONS`). Every ledger write that moves a state checks it (connectors/state/):
an illegal move raises `IllegalTransition` and changes nothing.

The values are the words stored in the ledger and shown in summaries (`StrEnum`: a state equals its word).
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    PLANNING = "planning"      # being planned; a run that died here is thrown away
    PLANNED = "planned"        # its batches are recorded, none sent yet
    HELD = "held"              # held by the guards until the same command runs with --accept
    LOADING = "loading"        # batches are being sent (a first load plans while it loads)
    LOADED = "loaded"          # every batch final, not yet committed
    COMMITTED = "committed"    # the snapshot holds what Braze acknowledged
    ABANDONED = "abandoned"    # dropped unsent (plan gone, export changed while held, died while planning)


class BatchState(StrEnum):
    PLANNED = "planned"            # never sent
    CLAIMED = "claimed"            # a worker holds it (lease), not sent
    SENDING = "sending"            # written before the request leaves: after a crash, in doubt
    ACKNOWLEDGED = "acknowledged"  # Braze answered for every object
    PENDING = "pending"            # some objects got no answer (no answer, in doubt, stopped)


class RequestState(StrEnum):
    """A delete or catalog request: one request, answered as a whole."""

    PLANNED = "planned"
    SENDING = "sending"
    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"          # Braze refused the whole request (a 400)
    PENDING = "pending"            # no answer within the retry budget: sent again by the next run


class Outcome(StrEnum):
    """What became of one object (or row) of a run: how summaries and the rejects file count it."""

    ACKNOWLEDGED = "acknowledged"
    REJECTED = "rejected"
    UNCHANGED = "unchanged"
    PENDING = "pending"


class HeldReason(StrEnum):
    """Why the snapshot holds a key out of the next plans (`held.parquet`, column `status`)."""

    IN_DOUBT = "in_doubt"          # an event or purchase that may have reached Braze: `settle` decides
    REJECTED = "rejected"          # Braze rejected this very object: sent again only once it changes
    DELETED = "deleted"            # a user deleted on behalf of user_deletes


B, R, Q = BatchState, RunState, RequestState
TRANSITIONS: dict[type[StrEnum], dict[StrEnum, frozenset[StrEnum]]] = {
    RunState: {
        # committed at once: an export identical to the last completed run's sends nothing (skip_unchanged)
        R.PLANNING: frozenset({R.PLANNED, R.HELD, R.LOADING, R.COMMITTED, R.ABANDONED}),
        R.PLANNED: frozenset({R.PLANNED, R.HELD, R.LOADING, R.COMMITTED, R.ABANDONED}),  # committed: nothing to send
        R.HELD: frozenset({R.HELD, R.PLANNED, R.LOADING, R.ABANDONED}),
        R.LOADING: frozenset({R.LOADING, R.LOADED, R.HELD, R.COMMITTED, R.ABANDONED}),
        R.LOADED: frozenset({R.LOADED, R.LOADING, R.COMMITTED, R.ABANDONED}),
        R.COMMITTED: frozenset({R.COMMITTED}),  # a summary recorded again (the deletes stage adds its figures)
        R.ABANDONED: frozenset(),
    },
    BatchState: {
        B.PLANNED: frozenset({B.CLAIMED, B.SENDING}),
        # A claim goes back (released), is taken over (lease expired), sent, or recorded unsent (stopped first).
        B.CLAIMED: frozenset({B.CLAIMED, B.PLANNED, B.SENDING, B.ACKNOWLEDGED, B.PENDING}),
        # Answered; or its owner vanished and another worker claims it (in doubt) or sends it again.
        B.SENDING: frozenset({B.SENDING, B.CLAIMED, B.ACKNOWLEDGED, B.PENDING}),
        B.PENDING: frozenset({B.PENDING, B.ACKNOWLEDGED}),  # `settle`: delivered
        B.ACKNOWLEDGED: frozenset({B.ACKNOWLEDGED}),  # a worker whose lease ran out reports the same answer
    },
    RequestState: {
        Q.PLANNED: frozenset({Q.SENDING}),
        Q.SENDING: frozenset({Q.SENDING, Q.ACKNOWLEDGED, Q.REJECTED, Q.PENDING}),
        Q.PENDING: frozenset({Q.SENDING}),
        Q.ACKNOWLEDGED: frozenset(),
        Q.REJECTED: frozenset(),
    },
}
FINAL_REQUESTS = (RequestState.ACKNOWLEDGED, RequestState.REJECTED)
UNFINISHED_BATCHES = (BatchState.PLANNED, BatchState.CLAIMED, BatchState.SENDING)
OPEN_RUNS = (RunState.PLANNING, RunState.PLANNED, RunState.HELD, RunState.LOADING, RunState.LOADED)


class IllegalTransition(Exception):
    """A ledger write would move a state where the table does not allow; nothing was written."""


def sources(new: StrEnum) -> tuple[str, ...]:
    """The states from which `new` may be reached (the `status IN (...)` of a checked write)."""
    table = TRANSITIONS[type(new)]
    return tuple(sorted(str(old) for old, targets in table.items() if new in targets))


def check(old: str, new: StrEnum) -> None:
    """Raise `IllegalTransition` unless `old` → `new` is in the table."""
    kind = type(new)
    try:
        state = kind(old)
    except ValueError:
        raise IllegalTransition(f"{kind.__name__}: unknown state {old!r}") from None
    if new not in TRANSITIONS[kind][state]:
        raise IllegalTransition(f"{kind.__name__}: {state} → {new} is not a legal transition")
