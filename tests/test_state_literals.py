"""States are types: no string literal of a run, batch, request or object state in product modules outside the
state types (connectors/states.py). Use `RunState`, `BatchState`, `RequestState`, `Outcome` or
`HeldReason`: the legal transitions are checked on every ledger write, and a typo is an AttributeError, not a
state nobody handles."""

from __future__ import annotations

import ast
from pathlib import Path

from connectors.states import BatchState, HeldReason, Outcome, RequestState, RunState

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("braze_migrate", "flows", "connectors", "transforms")
TYPES = ROOT / "connectors" / "states.py"
STATES = {str(s) for kind in (RunState, BatchState, RequestState, Outcome, HeldReason) for s in kind} - {"held"}
# (module, word): why the word there is not a state.
NOT_STATES = {
    ("braze_migrate/commit/accounting.py", "in_doubt"): "the outcome frame's in_doubt flag column",
    ("braze_migrate/commit/committer.py", "in_doubt"): "the outcome frame's in_doubt flag column",
    ("braze_migrate/ops/repair.py", "in_doubt"): "the name of the --in-doubt option in a run's settings",
    ("braze_migrate/run/workers.py", "in_doubt"): "the name of the --in-doubt option in a run's settings",
    ("flows/load.py", "in_doubt"): "the name of the --in-doubt option in the flow's options",
    ("connectors/braze/client.py", "in_doubt"): "an attribute name in __slots__",
    ("connectors/braze/client.py", "pending"): "an attribute name in __slots__",
    ("braze_migrate/ops/verify.py", "rejected"): "a column name of verify's per-name counts",
    ("braze_migrate/progress.py", "planning"): "a progress stage (reading, planning, loading, committing)",
    ("braze_migrate/progress.py", "loading"): "a progress stage (reading, planning, loading, committing)",
    ("braze_migrate/plan/planner.py", "planning"): "a progress stage (reading, planning, loading, committing)",
    ("flows/artifacts.py", "planning"): "a progress stage, named in artifact keys",
    ("flows/artifacts.py", "loading"): "a progress stage, named in artifact keys",
    ("flows/load.py", "planning"): "a progress stage, named in artifact keys",
    ("braze_migrate/reporting/terminal.py", "rejected"): "a column header of the summary table",
    ("braze_migrate/reporting/terminal.py", "unchanged"): "a column header of the summary table",
    ("braze_migrate/reporting/terminal.py", "pending"): "a column header of the summary table",
    ("braze_migrate/reporting/terminal.py", "deleted"): "a count of a catalog sync's summary",
    ("connectors/braze/deletes.py", "deleted"): "a key of Braze's /users/delete answer",
    # transforms/ is the lowest layer and imports nothing of ours: its diff buckets are plain words, which
    # test_the_diff_buckets_are_outcomes below holds to the Outcome and HeldReason values.
    ("transforms/deltas.py", "deleted"): "a diff bucket (a user deleted on behalf of user_deletes)",
    ("transforms/deltas.py", "in_doubt"): "the snapshot's held reason, read by the diff",
    ("transforms/deltas.py", "pending"): "a diff bucket",
    ("transforms/deltas.py", "rejected"): "a diff bucket / the snapshot's held reason",
    ("transforms/deltas.py", "unchanged"): "a diff bucket",
}


def literals(path: Path, root: Path = ROOT, allowed=NOT_STATES) -> list[tuple[str, int, str]]:
    rel = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(), rel)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(rel, node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATES
            and id(node) not in docstrings and (rel, node.value) not in allowed]


def test_no_state_literal_outside_the_state_types():
    found = [f"{rel}:{line}: {word!r}" for top in PRODUCT for path in sorted((ROOT / top).rglob("*.py"))
             if path != TYPES for rel, line, word in literals(path)]
    assert not found, "\n".join(found)


def test_every_allowed_word_is_still_used():
    """An entry of NOT_STATES that no longer matches anything is dropped, so the list stays the truth."""
    seen = {(rel, word) for top in PRODUCT for path in sorted((ROOT / top).rglob("*.py"))
            for rel, _, word in literals(path, ROOT, allowed={})}
    assert set(NOT_STATES) <= seen, set(NOT_STATES) - seen


def test_the_diff_buckets_are_outcomes():
    words = {str(o) for o in Outcome} | {str(h) for h in HeldReason}
    used = {w for m, w in NOT_STATES if m == "transforms/deltas.py"}
    assert used <= words


def test_the_scan_finds_a_state_literal(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('"""acknowledged"""\nif status == "acknowledged":\n    pass\n')
    assert literals(bad, tmp_path) == [("bad.py", 2, "acknowledged")]
