"""Identity requests: the export's `identifies` sent to `/users/identify` and `external_id_renames` to
`/users/external_ids/rename` (and, with `remove_deprecated_ids`, the old ids to `/users/external_ids/remove`),
planned, guarded, ledgered and committed like the deletes (braze_migrate/ops/deletes.py).

- plan: the validated requests (transforms/identity_requests.py), minus those Braze acknowledged in an earlier
  run, 50 per request, written to `identities.parquet` in the run's plan folder and recorded as `planned`
  (connectors/state/identities.py). Removes are planned once the renames of the run are answered.
- guard: never more than `identity_max_count` users, nor more than `identity_max_share` of the acknowledged
  users, in one run unless `allow_mass_identity`: a held plan sends nothing and says how to accept it.
- apply: write-ahead (`sending` is committed before the request leaves; the outcome and the changes Braze made
  after it answered, in one transaction); an acknowledged request is never sent again. A request left
  `sending` by a killed process is settled by reading its users back (`/users/export/ids`): a change Braze
  already made is recorded, not requested again; only the rest is sent.
- commit: each acknowledged change moves the user's acknowledged state to its new key (identify: into the
  external_id user, merged; rename: the new id), so the next night diffs the user under its new identity.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from connectors.braze.export import BrazeExporter
from connectors.braze.user_requests import RequestResult, UsersRequestClient
from connectors.sources import open_source, reading
from connectors.state.identities import IdentityLedger, rekey
from connectors.state.integrity import journal_for
from connectors.state.snapshot import Snapshot
from connectors.states import FINAL_REQUESTS, RequestState
from transforms import identity
from transforms.identity_requests import identify_requests, rename_requests

PLAN_FILE = "identities.parquet"
DONE_FILE = "identities-done.json"  # requests of the export an earlier run already carried out
REMOVE_FILE = "identities-remove.parquet"
MAX_ITEMS = 50
DATASETS = {"identifies": "identify", "external_id_renames": "rename"}
PATHS = {"identify": "/users/identify", "rename": "/users/external_ids/rename", "remove": "/users/external_ids/remove"}
PLAN_SCHEMA = {"kind": pl.Utf8, "batch_no": pl.Int64, "from_key": pl.Utf8, "to_key": pl.Utf8}


@dataclass(frozen=True)
class IdentitySettings:
    """Rate limits (identify shares `/users/delete`'s 20,000/min; rename and remove 1,000/min), the guard
    (like the deletes'), whether deprecated ids are removed, the retry bounds."""

    identify_rate_limit: str = "20000/60s"
    rename_rate_limit: str = "1000/60s"
    max_count: int = 1000
    max_share: float = 0.1
    min_users: int = 100
    allow_mass: bool = False
    remove_deprecated: bool = False
    max_attempts: int = 6
    max_retry_seconds: float = 300.0
    timeout_seconds: float = 30.0

    @classmethod
    def of(cls, settings) -> IdentitySettings:
        names = {"identify_rate_limit": "delete_rate_limit", "rename_rate_limit": "rename_rate_limit",
                 "max_count": "identity_max_count", "max_share": "identity_max_share", "min_users": "guard_min_users",
                 "allow_mass": "allow_mass_identity", "remove_deprecated": "remove_deprecated_ids",
                 "max_attempts": "max_attempts", "max_retry_seconds": "max_retry_seconds",
                 "timeout_seconds": "timeout_seconds"}
        return cls(**{k: getattr(settings, v) for k, v in names.items() if getattr(settings, v, None) is not None})


@dataclass
class IdentityReport:
    """What a run's identity requests did: counts per kind, never ids of users known by email or phone."""

    requested: dict[str, int] = field(default_factory=dict)
    already_done: dict[str, int] = field(default_factory=dict)
    rejected_rows: list[dict] = field(default_factory=list)
    held: bool = False
    message: str | None = None
    batches: dict[str, int] = field(default_factory=dict)
    acknowledged_batches: int = 0
    pending_batches: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    settled_by_reading_back: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def read_requests(source: str, mapping: str | None, work_dir: Path) -> tuple[pl.DataFrame, list[dict]] | None:
    """(kind, from_key, to_key, _file, _row of every valid request, rejected rows) from the source's
    `identifies` and `external_id_renames`, or None when it has neither."""
    data = open_source(source, mapping=mapping, work_dir=work_dir)
    found = {name: ds for name, ds in data.items() if name in DATASETS}
    if not found:
        return None
    goods, rejected = [], []
    for name, ds in found.items():
        fn = identify_requests if name == "identifies" else rename_requests
        with reading(ds):
            good, rej = pl.collect_all(fn(ds.frame, files=ds.files))
        goods.append(good.with_columns(kind=pl.lit(DATASETS[name])))
        rejected += rej.drop("value").to_dicts()
    return pl.concat(goods).select("kind", "from_key", "to_key", "_file", "_row"), rejected


def plan_identities(run_id: str, plan_dir: Path, state: Path, source: str, mapping: str | None, ledger,
                    settings: IdentitySettings, endpoint: str, api_key: str) -> IdentityReport | None:
    """Write and record the identity plan of a run (once: a resumed run keeps its plan); None without any.
    First, the requests an earlier run left out when it was killed are settled by reading their users back."""
    book = IdentityLedger(ledger)
    report = IdentityReport()
    for other, kind, batch_no, items in book.in_doubt(run_id):
        made = settle(kind, items, endpoint, api_key)
        done = [i for i in items if i in made]
        report.settled_by_reading_back += len(done)
        # What Braze did is recorded; the rest is planned again below, in this run.
        book.record_result(other, kind, batch_no, RequestState.ACKNOWLEDGED if len(done) == len(items) else RequestState.PENDING,
                           requests=0, throttled=0, reason="settled by reading back", done=done)
    commit_changes(state, ledger, run_id)  # changes a killed run recorded but did not commit
    path = plan_dir / PLAN_FILE
    if not path.exists():
        found = read_requests(source, mapping, plan_dir / "work" / "identities")
        if found is None:
            return None
        requests, report.rejected_rows = found
        done = book.changes().select("kind", "from_key")
        todo = requests.join(done, on=["kind", "from_key"], how="anti")
        report.already_done = {k: requests.filter(pl.col("kind") == k).height - todo.filter(pl.col("kind") == k).height
                               for k in ("identify", "rename")}
        plan = _numbered(todo)
        plan_dir.mkdir(parents=True, exist_ok=True)
        plan.write_parquet(path)
        for kind in ("identify", "rename"):
            book.record_plan(run_id, kind, list(plan.filter(pl.col("kind") == kind)
                                                .select("batch_no", "from_key", "to_key").iter_rows()))
        (plan_dir / DONE_FILE).write_text(json.dumps(report.already_done))
    elif (plan_dir / DONE_FILE).exists():
        report.already_done = json.loads((plan_dir / DONE_FILE).read_text())
    plan = pl.read_parquet(path)
    for kind in ("identify", "rename"):
        mine = plan.filter(pl.col("kind") == kind)
        report.requested[kind] = mine.height
        report.batches[kind] = mine["batch_no"].n_unique()
    users = sum(report.requested.values())
    acked = Snapshot(state).scan("users").select("external_id").collect().height
    over_count = users > settings.max_count
    over_share = acked >= max(1, settings.min_users) and users > settings.max_share * acked
    started = any(b.status != RequestState.PLANNED for b in book.batches(run_id))
    if (over_count or over_share) and not settings.allow_mass and not started:
        report.held = True
        share = f" ({users / acked:.0%} of the {acked} acknowledged users)" if acked else ""
        report.message = (f"identity requests held: {users} users to identify or rename{share} is over the guard "
                          f"(at most {settings.max_count} users and {settings.max_share:.0%} of acknowledged users "
                          "per run); check the identifies and external_id_renames exports, then run again with "
                          "--allow-mass-identity")
    return report


def _numbered(todo: pl.DataFrame) -> pl.DataFrame:
    """50 per request, one kind per request, in file order."""
    todo = todo.sort(["kind", "_file", "_row"]).with_columns(
        batch_no=(pl.int_range(pl.len(), dtype=pl.Int64).over("kind") // MAX_ITEMS))
    return todo.select(list(PLAN_SCHEMA)).cast(PLAN_SCHEMA)


def body_of(kind: str, items: list[tuple[str, str]]) -> dict:
    """The request body of (from_key, to_key) items of one kind."""
    if kind == "identify":
        return {"aliases_to_identify": [{"external_id": to, "user_alias": identity.request_identifier(src)[1]}
                                        for src, to in items]}
    if kind == "rename":
        return {"external_id_renames": [{"current_external_id": src, "new_external_id": to} for src, to in items]}
    return {"external_ids": [src for src, _ in items]}


def done_of(kind: str, items: list[tuple[str, str]], result: RequestResult) -> tuple[list[tuple[str, str]], int]:
    """(the changes Braze made, how many it refused) from an acknowledged answer. Identify answers a count
    only: every item is taken as done. Rename and remove name what they did and what they refused."""
    if result.status != RequestState.ACKNOWLEDGED:
        return [], 0
    if kind == "identify":
        return items, 0
    field_name = "external_ids" if kind == "rename" else "removed_ids"
    named = {x for x in result.answer.get(field_name) or [] if isinstance(x, str)}
    done = [(s, t) for s, t in items if s in named]
    return done, len(items) - len(done)


def apply_identities(run_id: str, plan_dir: Path, state: Path, ledger, endpoint: str, api_key: str,
                     settings: IdentitySettings, report: IdentityReport) -> IdentityReport:
    """Send every identify, then rename (then remove) request of the run not yet acknowledged or rejected."""
    book = IdentityLedger(ledger)
    plan = pl.read_parquet(plan_dir / PLAN_FILE)
    for kind in ("identify", "rename"):
        _send_kind(run_id, kind, plan.filter(pl.col("kind") == kind), book, endpoint, api_key, settings, report)
    if settings.remove_deprecated:
        removes = _plan_removes(run_id, plan_dir, book)
        _send_kind(run_id, "remove", removes, book, endpoint, api_key, settings, report)
    return report


def _plan_removes(run_id: str, plan_dir: Path, book: IdentityLedger) -> pl.DataFrame:
    """Every renamed id Braze acknowledged and whose old id is not removed yet (once per run: kept on resume)."""
    path = plan_dir / REMOVE_FILE
    if not path.exists():
        changes = book.changes()
        renamed = changes.filter(pl.col("kind") == "rename").select("from_key")
        removed = changes.filter(pl.col("kind") == "remove").select("from_key")
        todo = renamed.join(removed, on="from_key", how="anti").with_columns(
            kind=pl.lit("remove"), to_key=pl.col("from_key"),
            batch_no=pl.int_range(pl.len(), dtype=pl.Int64) // MAX_ITEMS)
        todo = todo.select(list(PLAN_SCHEMA)).cast(PLAN_SCHEMA)
        todo.write_parquet(path)
        book.record_plan(run_id, "remove", list(todo.select("batch_no", "from_key", "to_key").iter_rows()))
    return pl.read_parquet(path)


def _send_kind(run_id: str, kind: str, plan: pl.DataFrame, book: IdentityLedger, endpoint: str, api_key: str,
               settings: IdentitySettings, report: IdentityReport) -> None:
    status = {b.batch_no: b.status for b in book.batches(run_id, kind)}
    items = {b: list(zip(f, t, strict=True)) for b, f, t in
             plan.group_by("batch_no", maintain_order=True).agg("from_key", "to_key").sort("batch_no").iter_rows()}
    todo = {b: its for b, its in items.items() if status.get(b) not in FINAL_REQUESTS}
    in_doubt = [b for b in todo if status.get(b) == RequestState.SENDING]
    if in_doubt:  # killed while a request was out: what Braze already did is recorded, not requested again
        made = settle(kind, [i for b in in_doubt for i in todo[b]], endpoint, api_key)
        for b in in_doubt:
            done = [i for i in todo[b] if i in made]
            report.settled_by_reading_back += len(done)
            rest = [i for i in todo[b] if i not in made]
            if not rest:
                book.record_result(run_id, kind, b, RequestState.ACKNOWLEDGED, requests=0, throttled=0,
                                   reason="settled by reading back", done=done)
                del todo[b]
            else:
                book.record_result(run_id, kind, b, RequestState.SENDING, requests=0, throttled=0, reason=None, done=done)
                todo[b] = rest
    if not todo:
        return
    rate = settings.identify_rate_limit if kind == "identify" else settings.rename_rate_limit
    client = UsersRequestClient(endpoint, api_key, path=PATHS[kind], rate=rate, max_attempts=settings.max_attempts,
                                max_seconds=settings.max_retry_seconds, timeout=settings.timeout_seconds)

    def result(batch_no: int, r: RequestResult) -> None:
        done, refused = done_of(kind, todo[batch_no], r)
        if refused and r.retries:  # an earlier attempt may have landed: its changes read as refused now
            made = settle(kind, [i for i in todo[batch_no] if i not in done], endpoint, api_key)
            done, refused = done + sorted(made), refused - len(made)
            report.settled_by_reading_back += len(made)
        report.refused[kind] = report.refused.get(kind, 0) + refused
        book.record_result(run_id, kind, batch_no, r.status, requests=r.requests, throttled=r.throttled,
                           reason=r.reason, done=done)

    client.send_all([(b, body_of(kind, its)) for b, its in todo.items()],
                    lambda b: book.mark_sending(run_id, kind, b), result)


def settle(kind: str, items: list[tuple[str, str]], endpoint: str, api_key: str) -> set[tuple[str, str]]:
    """The items of an in-doubt request that Braze already carried out, read back with `/users/export/ids`:
    an alias whose profile has the external_id; a new id that names a user; a removed id that names none."""
    exporter = BrazeExporter(endpoint, api_key)
    if kind == "identify":
        found = exporter.export_users_sync([s for s, _ in items], ["external_id", "user_aliases"]).by_key
        return {(s, t) for s, t in items if (found.get(s) or {}).get("external_id") == t}
    if kind == "rename":
        found = exporter.export_users_sync([t for _, t in items], ["external_id"]).by_key
        return {(s, t) for s, t in items if t in found}
    found = exporter.export_users_sync([s for s, _ in items], ["external_id"]).by_key
    return {(s, t) for s, t in items if s not in found}


def commit_changes(state: Path, ledger, run_id: str) -> int:
    """Move the acknowledged state of every changed user not yet moved (identify, rename); mark them."""
    book = IdentityLedger(ledger)
    changes = book.changes(committed=False)
    if changes.height == 0:
        return 0
    rekey(Snapshot(state, journal=journal_for(state, ledger, run_id)), changes)
    book.mark_committed(changes)
    return changes.height


def finish_report(run_id: str, ledger, report: IdentityReport, plan_dir: Path) -> IdentityReport:
    """Counts per kind from the ledger."""
    book = IdentityLedger(ledger)
    batches = book.batches(run_id)
    report.acknowledged_batches = sum(1 for b in batches if b.status == RequestState.ACKNOWLEDGED)
    report.pending_batches = sum(1 for b in batches if b.status not in FINAL_REQUESTS)
    for b in batches:
        report.requests[b.kind] = report.requests.get(b.kind, 0) + b.requests
    plan = pl.read_parquet(plan_dir / PLAN_FILE)
    if (plan_dir / REMOVE_FILE).exists():
        plan = pl.concat([plan, pl.read_parquet(plan_dir / REMOVE_FILE)])
    changes = book.changes().select("kind", "from_key", pl.lit(True).alias("_done"))
    status = pl.DataFrame([(b.kind, b.batch_no, b.status) for b in batches], orient="row",
                          schema={"kind": pl.Utf8, "batch_no": pl.Int64, "_status": pl.Utf8})
    marked = (plan.join(changes, on=["kind", "from_key"], how="left")
              .join(status, on=["kind", "batch_no"], how="left").with_columns(pl.col("_status").fill_null(RequestState.PLANNED.value)))
    for kind in ("identify", "rename", "remove"):
        mine = marked.filter(pl.col("kind") == kind)
        report.done[kind] = mine.filter(pl.col("_done").fill_null(False)).height
        report.pending[kind] = mine.filter(~pl.col("_status").is_in(list(FINAL_REQUESTS))
                                           & ~pl.col("_done").fill_null(False)).height
    return report


def run_identities(run_id: str, plan_dir: Path, state: Path, source: str, mapping: str | None, ledger,
                   endpoint: str, api_key: str, settings: IdentitySettings) -> IdentityReport | None:
    """plan → guard → apply → commit for one run's identity requests; None when the source has none."""
    report = plan_identities(run_id, plan_dir, state, source, mapping, ledger, settings, endpoint, api_key)
    if report is None or report.held:
        return report
    apply_identities(run_id, plan_dir, state, ledger, endpoint, api_key, settings, report)
    commit_changes(state, ledger, run_id)
    return finish_report(run_id, ledger, report, plan_dir)

