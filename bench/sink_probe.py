"""Peak RSS of the planner's first users step, the hash-partitioned sink (planner.build_plan), per variant.

    python -m bench.sink_probe SOURCE PARTITIONS [VARIANT ...]

Each variant runs in its own child process and reports its peak RSS (`VmHWM`). `auto` is the planner's call as
written; `bytes=N` and `rows=N` bound the bytes or rows a partition file may buffer before it is written;
`per_file` sinks each source file on its own (memory follows the largest file, not the export);
`batches` streams the rows in chunks (`collect_batches`) and writes each chunk's partitions as files of their
own; `slices` sinks the export one slice of `CHUNK_ROWS` rows at a time (the sink of each slice is the
planner's), each into a folder of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from bench.data import OUT, ROOT
from bench.rss import peak_rss_bytes
from connectors.sources import scan_folder
from connectors.state.snapshot import partition_of
from transforms import normalize

VARIANTS = ("auto", "bytes=33554432", "rows=65536", "per_file", "batches", "slices")
CHUNK_ROWS = 1_000_000


def sink(frame: pl.LazyFrame, parts: int, target: Path, variant: str) -> None:
    """The planner's partitioned sink, with the buffer bound the variant names."""
    limits = {}
    if variant.startswith("bytes="):
        limits["approximate_bytes_per_file"] = int(variant.split("=")[1])
    elif variant.startswith("rows="):
        limits["max_rows_per_file"] = int(variant.split("=")[1])
    (frame.with_columns(_part=partition_of(normalize.external_id_text(frame), parts))
     .sink_parquet(pl.PartitionBy(target, key="_part", include_key=False, **limits), mkdir=True))


def write_partitions(frame: pl.LazyFrame, parts: int, target: Path, chunk_rows: int = CHUNK_ROWS) -> None:
    """`target`/_part=P/chunk-K.parquet: the layout the planner reads back, written chunk by chunk."""
    keyed = frame.with_columns(_part=partition_of(normalize.external_id_text(frame), parts))
    for k, chunk in enumerate(keyed.collect_batches(chunk_size=chunk_rows)):
        for (p,), rows in chunk.partition_by("_part", as_dict=True, include_key=False).items():
            folder = target / f"_part={p}"
            folder.mkdir(parents=True, exist_ok=True)
            rows.write_parquet(folder / f"chunk-{k:05d}.parquet")


def child(source: str, parts: int, variant: str) -> dict:
    users = scan_folder(source)["users"]
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        started = time.perf_counter()
        if variant == "per_file":
            for k, f in enumerate(users.files):
                one = scan_folder_file(users.frame, f)
                sink(one, parts, Path(tmp) / f"file-{k}", "auto")
        elif variant == "slices":
            total = users.frame.select(pl.len()).collect().item()
            for k, start in enumerate(range(0, total, CHUNK_ROWS)):
                sink(users.frame.slice(start, CHUNK_ROWS), parts, Path(tmp) / f"slice-{k:05d}", "auto")
        elif variant == "batches":
            write_partitions(users.frame, parts, Path(tmp))
        else:
            sink(users.frame, parts, Path(tmp), variant)
        seconds = time.perf_counter() - started
        files = sum(1 for _ in Path(tmp).rglob("*.parquet"))
    return {"variant": variant, "seconds": seconds, "files": files,
            "peak_rss_bytes": peak_rss_bytes()}


def scan_folder_file(frame: pl.LazyFrame, file: str) -> pl.LazyFrame:
    """The rows of one source file (sources.py tags every row with its `_file`)."""
    return frame.filter(pl.col("_file") == file)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        print(json.dumps(child(argv[1], int(argv[2]), argv[3])))
        return 0
    source, parts, variants = argv[0], int(argv[1]), argv[2:] or list(VARIANTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for variant in variants:
        done = subprocess.run([sys.executable, "-m", "bench.sink_probe", "--child", source, str(parts), variant],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
        print(done.stdout.strip() or done.stderr.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
