"""Skip the users a sync would find unchanged, without normalizing or diffing them.

The planner splits each users partition in two (`split_known`): rows whose raw hash and whose user's
snapshot-row hash match the memo (connectors/state/seen.py) are counted unchanged at once, with the data
points the memo recorded; every other row takes the full path (normalize, contract, suspicious checks,
diff) exactly as before. The full path's clean outcomes become the plan's `seen_next/part-NNNNN.parquet`
(`next_entries`), and the commit turns those of users Braze acknowledged, or found unchanged, into memo
entries (`commit_entries`), hashing the snapshot rows it just wrote. A user is never skipped when any row
of the partition shares their external_id, when they are held (rejected before, deleted), or when a row of
theirs was rejected or a cell dropped: those always take the full path, so every rejects file stays whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import polars as pl

import transforms
from braze_migrate.plan.contract import read_contract
from connectors.state.seen import SeenCache
from connectors.state.snapshot import Snapshot
from connectors.states import Outcome
from transforms import normalize
from transforms.rowhash import raw_row_hash, values_hash
from transforms.type_contract import KINDS, conforms, first_conforms

log = logging.getLogger(__name__)
NEXT = "seen_next"
_CODE = [*sorted(Path(transforms.__file__).parent.glob("*.py")), Path(__file__),
         Path(__file__).with_name("planner.py")]
_ENTRY = {"external_id": pl.Utf8, "raw_hash": pl.UInt64, "data_points": pl.Int64, "kind": pl.Utf8,
          "values_hash": pl.UInt64, "next_hash": pl.UInt64, "kinds": pl.Utf8}
NO_VALUE = "?"  # in `kinds`: the attribute is empty (no JSON kind starts with it)


def ingredients(schema: pl.Schema, *, csv_types: Mapping | None, rules) -> dict:
    """What, besides the contract, decides a user's plan: the export's columns and types in order, the CSV
    types and the suspicious-row rules (not their date: a date of birth that was not in the future stays so)."""
    return {
        "schema": [[c, str(t)] for c, t in schema.items()],
        "csv_types": sorted([c, str(t)] for c, t in (csv_types or {}).items()),
        "rules": [rules.mode, rules.horizon_year, rules.min_dob_year],
    }


def plan_salt(made_of: dict, contract: Mapping[str, str]) -> str:
    """The memo's salt: `ingredients`, the contract of the export's columns, the Polars version and the
    planning code (any change to them and every user takes the full path once)."""
    columns = {c for c, _ in made_of["schema"]}
    digest = hashlib.sha256()
    digest.update(pl.__version__.encode())
    digest.update(json.dumps(made_of, sort_keys=True).encode())
    digest.update(json.dumps(sorted((c, k) for c, k in contract.items() if c in columns)).encode())
    digest.update(code_digest().encode())
    return digest.hexdigest()[:16]


def code_digest() -> str:
    """A digest of the code that decides a user's plan (every module of transforms/, this one, the planner)."""
    digest = hashlib.sha256()
    for path in _CODE:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Split(NamedTuple):
    """A users partition split by the memo."""

    rest: pl.DataFrame  # the rows to plan in full
    skipped: pl.DataFrame  # the users counted unchanged: external_id, data_points
    keys: pl.DataFrame  # external_id and raw_hash of every user with exactly one row
    snapshot: pl.DataFrame  # the snapshot rows of the users in `rest`
    snapshot_hashes: pl.DataFrame  # external_id and values_hash of every snapshot row of the partition


def split_known(frame: pl.LazyFrame, p: int, salt: str, snapshot: Snapshot, held: pl.LazyFrame) -> Split:
    """Read partition p once and split it by the memo. `held` is the partition's held rows (users and
    user_deletes): their users are never skipped."""
    rows = frame.collect(engine="in-memory")
    key = normalize.external_id_text(frame)
    hashed = rows.select(key.alias("external_id"), raw_row_hash(rows.schema).alias("raw_hash"))
    single = hashed["external_id"].is_not_null() & ~hashed["external_id"].is_duplicated()
    keys = hashed.filter(single)
    snap = snapshot.scan_users_part(p).collect(engine="in-memory")
    snapshot_hashes = snap.select("external_id", values_hash(snap.schema).alias("values_hash"))
    memo = SeenCache(snapshot.root.parent).read(p, salt)
    none = pl.DataFrame(schema={"external_id": pl.Utf8, "data_points": pl.Int64})
    if memo is None or memo.height == 0 or snapshot_hashes.height == 0:
        return Split(rows, none, keys, snap, snapshot_hashes)
    skipped = (
        keys.join(memo, on=["external_id", "raw_hash"], how="inner")
        .join(snapshot_hashes, on=["external_id", "values_hash"], how="inner")
        .join(held.select(pl.col("key").alias("external_id")).unique().collect(engine="in-memory"),
              on="external_id", how="anti")
        .select("external_id", "data_points")
    )
    if skipped.height == 0:
        return Split(rows, none, keys, snap, snapshot_hashes)
    rest = rows.filter(~hashed["external_id"].is_in(skipped["external_id"]).fill_null(False))
    # The diff joins the snapshot rows of the users it plans; the skipped ones need not be joined.
    snap = snap.join(skipped.select("external_id"), on="external_id", how="anti")
    return Split(rest, skipped, keys, snap, snapshot_hashes)


def next_entries(good: pl.DataFrame, rejects: pl.DataFrame, keys: pl.DataFrame, snapshot_hashes: pl.DataFrame,
                 sent: pl.DataFrame, unchanged: pl.DataFrame, points: pl.DataFrame) -> pl.DataFrame:
    """The full path's users that may become memo entries (_ENTRY): clean (no reject of theirs, no cell
    dropped) and either sent (an entry once Braze acknowledges them) or unchanged (an entry while their
    snapshot row is still the one they were found unchanged against: its hash is kept to check that).

    `keys` and `snapshot_hashes` come from `split_known` (Split); `sent` and `unchanged` are the diff's
    objects to send and its unchanged rows (`key`); `points` each good row's cost (`_file`, `_row`,
    `data_points`). A first load's entries get their future rows' hash and kinds from `with_first_rows`."""
    outcome = pl.concat([
        sent.select(pl.col("key").alias("external_id"), pl.lit("sent").alias("kind")),
        unchanged.select(pl.col("key").alias("external_id"), pl.lit(Outcome.UNCHANGED).alias("kind")),
    ])
    rejected = rejects.filter(pl.col("key").is_not_null()).select(pl.col("key").alias("external_id")).unique()
    return (
        good.filter(pl.col("_dropped").list.len() == 0)
        .select("external_id", "_file", "_row")
        .join(points.select("_file", "_row", "data_points"), on=["_file", "_row"], how="inner")
        .join(keys, on="external_id", how="inner")
        .join(rejected, on="external_id", how="anti")
        .join(outcome, on="external_id", how="inner")
        .join(snapshot_hashes, on="external_id", how="left")
        .with_columns(pl.when(pl.col("kind") == Outcome.UNCHANGED).then(pl.col("values_hash")).alias("values_hash"))
        .with_columns(next_hash=pl.lit(None, pl.UInt64), kinds=pl.lit(None, pl.Utf8))
        .select(list(_ENTRY)).cast(_ENTRY)
    )


def first_rows_digest(rows: pl.DataFrame) -> pl.DataFrame:
    """(external_id, next_hash, kinds) of snapshot rows to be: the row's `values_hash`, and the first character
    of each attribute in name order (NO_VALUE when empty), enough to check it against any contract."""
    columns = sorted(c for c in rows.columns if c != "external_id")
    firsts = [pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c).str.slice(0, 1)).otherwise(pl.lit(NO_VALUE))
              for c in columns]
    return rows.select(
        "external_id", values_hash(rows.schema).alias("next_hash"),
        (pl.concat_str(firsts) if firsts else pl.lit("")).alias("kinds"),
    )


def with_first_rows(entries: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """`entries` of a partition that had no snapshot row (a first load), with the hash and kinds of the rows its
    part will hold (`rows`: its `users_next`), taken now while the load runs, so the commit need not read the
    part back (`commit_entries`)."""
    return (entries.drop("next_hash", "kinds").join(first_rows_digest(rows), on="external_id", how="left")
            .select(list(_ENTRY)).cast(_ENTRY))


def schema_of(frame_schema: pl.Schema) -> list[list[str]]:
    """A frame's columns and types, sorted: what `commit_entries` compares with the part the commit wrote."""
    return sorted([c, str(t)] for c, t in frame_schema.items())


def write_next(plan_dir: Path, p: int, made_of: dict, entries: pl.DataFrame,
               first_schema: list[list[str]] | None = None) -> None:
    """The partition's candidates; `first_schema`: the columns of the snapshot part a first load will write."""
    folder = plan_dir / NEXT
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ingredients.json").write_text(json.dumps(made_of))
    (folder / f"part-{p:05d}.json").write_text(json.dumps({"first_schema": first_schema}))
    entries.write_parquet(folder / f"part-{p:05d}.parquet", compression="lz4")


def commit_entries(plan_dir: Path, snapshot: Snapshot, acked_users: dict[int, pl.DataFrame]) -> None:
    """After the users snapshot and its contract are committed: the plan's candidates that are unchanged, or
    that Braze acknowledged, become memo entries with the hash of the snapshot row they now have.

    The memo is salted with the contract as the commit left it, which may now type columns the plan found
    untyped; a user whose values do not all have their column's contract type would be planned differently
    under it, so only users whose values conform become entries. `acked_users`: per users partition, the
    external ids Braze acknowledged."""
    folder = plan_dir / NEXT
    if not (folder / "ingredients.json").exists():
        return
    try:
        made_of = json.loads((folder / "ingredients.json").read_text())
        columns = {c for c, _ in made_of["schema"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("memo of unchanged users not updated (%s is unreadable: %s); the next sync plans every user "
                    "in full", folder / "ingredients.json", type(exc).__name__)
        return
    contract = read_contract(snapshot)
    salt = plan_salt(made_of, contract)
    cache = SeenCache(snapshot.root.parent)
    for path in sorted(folder.glob("part-*.parquet")):
        p = int(path.stem.split("-")[1])
        acked = acked_users.get(p, pl.DataFrame(schema={"external_id": pl.Utf8})).select("external_id").unique()
        try:
            candidates = pl.scan_parquet(path)
            entries = _first_load_entries(path, snapshot, p, candidates, acked, contract, columns)
            if entries is None:
                entries = _entries_from_snapshot(snapshot, p, candidates, acked, contract, columns)
        except (pl.exceptions.PolarsError, OSError, ValueError, KeyError) as exc:
            # A cache: a damaged candidate file costs one slow plan of these users, never the commit.
            log.warning("memo of unchanged users not updated for users partition %d (%s: %s); the next sync "
                        "plans those users in full", p, path.name, type(exc).__name__)
            continue
        if entries.height:
            cache.update(p, salt, entries)


def _first_load_entries(path: Path, snapshot: Snapshot, p: int, candidates: pl.LazyFrame, acked: pl.DataFrame,
                        contract: Mapping[str, str], columns: set[str]) -> pl.DataFrame | None:
    """A first load's entries from what the plan recorded, when the part the commit wrote has exactly the
    columns the plan expected (so each acknowledged user's row is their planned row); else None."""
    sidecar = path.with_suffix(".json")
    planned = json.loads(sidecar.read_text()).get("first_schema") if sidecar.exists() else None
    part = snapshot.users_part_path(p)
    if planned is None or not part.exists() or schema_of(pl.read_parquet_schema(part)) != planned:
        return None
    names = sorted(c for c, _ in planned if c != "external_id")
    typed = [(names.index(c), k) for c, k in contract.items() if c in columns and c in names and k in KINDS]
    conforming = pl.all_horizontal([first_conforms(pl.col("kinds").str.slice(i, 1), k) for i, k in typed]) \
        if typed else pl.lit(True)
    return (
        candidates.filter((pl.col("kind") == "sent") & pl.col("next_hash").is_not_null())
        .join(acked.lazy(), on="external_id", how="semi")
        .filter(conforming)
        .select("external_id", "raw_hash", pl.col("next_hash").alias("values_hash"), "data_points")
        .collect(engine="in-memory")
    )


def _entries_from_snapshot(snapshot: Snapshot, p: int, candidates: pl.LazyFrame, acked: pl.DataFrame,
                           contract: Mapping[str, str], columns: set[str]) -> pl.DataFrame:
    """Entries checked against the snapshot rows the commit left (read back and hashed)."""
    snap = snapshot.scan_users_part(p)
    names = snap.collect_schema().names()
    typed = [(c, k) for c, k in contract.items() if c in columns and c in names and k in KINDS]
    conforming = pl.all_horizontal([conforms(pl.col(c), k) for c, k in typed]) if typed else pl.lit(True)
    hashed = snap.filter(conforming).select("external_id", values_hash(snap.collect_schema()).alias("_now"))
    return (
        candidates.join(acked.lazy().with_columns(_acked=pl.lit(True)), on="external_id", how="left")
        .join(hashed, on="external_id", how="inner")
        .filter(pl.when(pl.col("kind") == "sent").then(pl.col("_acked").fill_null(False))
                .otherwise(pl.col("values_hash") == pl.col("_now")))
        .select("external_id", "raw_hash", pl.col("_now").alias("values_hash"), "data_points")
        .collect(engine="in-memory")
    )
