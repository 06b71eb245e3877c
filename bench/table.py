"""The machine's description and the printed table (Markdown, so docs/performance.md can take it as is)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

GB = 1e9
QUICK_BELOW = 1_000_000


def machine() -> dict:
    """Cores, memory, versions and load: what a reader needs to weigh the numbers."""
    import pandas
    import polars

    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
    return {
        "nproc": os.cpu_count(),
        "mem_total_gb": int(meminfo["MemTotal"].split()[0]) * 1024 / GB,
        "mem_available_gb": int(meminfo["MemAvailable"].split()[0]) * 1024 / GB,
        "python": platform.python_version(),
        "polars": polars.__version__,
        "pandas": pandas.__version__,
        "loadavg_start": os.getloadavg(),
        "commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True, timeout=5)
    except OSError:
        return None
    return done.stdout.strip() or None


def render(results: dict) -> str:
    """One Markdown table of every measured row, then the machine line."""
    rows = [*_plan_rows(results), *_client_rows(results), *_memory_rows(results), *_history_rows(results), *_sql_rows(results), *_loader_rows(results),
            *_packing_rows(results), *_e2e_rows(results), *_wall_rows(results), *_sustain_rows(results)]
    lines = ["| # | measure | ours | baseline | ratio or target |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    m = results["machine"]
    loads = [v for pair in results["loadavg"].values() for v in pair]
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "n/a"
    lines.append("")
    if results["sizes"]["users"] < QUICK_BELOW:
        lines.append("")
        lines.append("quick sizes: start-up costs dominate; the targets are judged at the default sizes only")
    lines.append(f"machine: {m['nproc']} cores, {m['mem_total_gb']:.0f} GB ({m['mem_available_gb']:.0f} GB free at "
                 f"start), Python {m['python']}, Polars {m['polars']}, pandas {m['pandas']}, commit {m['commit']}; "
                 f"1-min load average during the sections {load}")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _plan_rows(r: dict) -> list[tuple[str, ...]]:
    p = r.get("plan")
    if not p:
        return []
    same = "same" if p["same_pairs"] else f"DIFFER ({p['only_ours']} only ours, {p['only_naive']} only naive)"
    what = (f"plan {p['users']:,} users, ~5% changed (median of {p['rounds']}); "
            f"changed pairs: {p['changed_pairs']:,}, {same}")
    ratio = f"{p['speedup']:.2f}× faster" if p["speedup"] >= 1 else f"{1 / p['speedup']:.2f}× slower"
    ratio += f" (≥ 3× faster: {_verdict(p['speedup'] >= 3)})"
    return [("a", what, f"{p['ours_s']:.1f} s", f"naive pandas {p['naive_s']:.1f} s", ratio)]


def _client_rows(r: dict) -> list[tuple[str, ...]]:
    from bench.clients import NAIVE, OURS, PYPI

    rows = []
    for key in ("client_minimal", "client_sandbox"):
        c = r.get(key)
        if not c:
            continue
        cases = c["cases"]
        ours = cases[OURS]
        what = f"req/s, 75-object bodies, {c['server']} server ({c['requests']} req × {c['rounds']})"
        for other in (PYPI, NAIVE):
            base = cases[other]
            ratio = (f"{ours['req_per_s'] / base['req_per_s']:.1f}× throughput, "
                     f"{ours['cpu_ms_per_request'] / base['cpu_ms_per_request']:.2f}× CPU/request")
            rows.append(("b", what, f"{ours['req_per_s']:.0f}", f"{other} {base['req_per_s']:.0f}", ratio))
        if key == "client_minimal":
            cpu = ours["cpu_ms_per_request"]
            others = (f"{PYPI} {cases[PYPI]['cpu_ms_per_request']:.3f} ms; "
                      f"{NAIVE} {cases[NAIVE]['cpu_ms_per_request']:.3f} ms")
            rows.append(("c", "client CPU-ms per 75-object request (minimal server)", f"{cpu:.3f} ms", others,
                         f"≤ 0.5 ms: {_verdict(cpu <= 0.5)}"))
    return rows


def _memory_rows(r: dict) -> list[tuple[str, ...]]:
    rows = []
    for users, m in (r.get("memory") or {}).items():
        top = next(iter((m.get("phases") or {}).items()), None)
        where = f"; peak at {top[0]}" if top else ""
        n = int(users)
        what = f"peak RSS, sync plan of {n:,} users × 21 attributes vs a {n:,}-user snapshot ({m['seconds']:.0f} s{where})"
        target = f"< 3 GB: {_verdict(m['under_target'])}"
        if n >= 10_000_000:
            ok = m["seconds"] <= 150 and m["peak_rss_bytes"] <= 1.5 * GB
            target = f"≤ 150 s and ≤ 1.5 GB: {_verdict(ok)}"
        rows.append(("d", what, f"{m['peak_rss_bytes'] / GB:.2f} GB", "", target))
    return rows


def _history_rows(r: dict) -> list[tuple[str, ...]]:
    """Peak RSS of planning the history-heavy export (a first backfill) and at half its history."""
    h = r.get("history")
    if not h:
        return []
    full, half = h["cases"]["full"], h["cases"]["half"]

    def size(c: dict) -> str:
        return f"{c['users']:,} users, {c['events']:,} events, {c['purchases']:,} purchases"

    what = f"peak RSS, plan of a history-heavy export: {size(full)} ({full['seconds']:.0f} s)"
    what += "; events and purchases each one Parquet file"
    rows = [("f", what, f"{full['peak_rss_bytes'] / GB:.2f} GB", "",
             f"≤ 0.6 GB: {_verdict(full['peak_rss_bytes'] <= 0.6 * GB)}")]
    what = f"peak RSS, full history vs half the history ({size(half)}, {half['seconds']:.0f} s)"
    rows.append(("f", what, f"{full['peak_rss_bytes'] / GB:.2f} GB", f"half {half['peak_rss_bytes'] / GB:.2f} GB",
                  f"{h['full_over_half']:.2f}× (≤ 1.2×: {_verdict(h['full_over_half'] <= 1.2)})"))
    return rows


def _sql_rows(r: dict) -> list[tuple[str, ...]]:
    """A PostgreSQL query into the spool: ours (ADBC) vs the row-by-row path and vs `COPY ... TO STDOUT`."""
    q = r.get("sql")
    if not q:
        return []
    sec = q["seconds"]
    what = (f"{q['rows']:,} rows × {q['columns']} columns (text, numbers, timestamps, text[], jsonb) from "
            f"PostgreSQL into the spool (median of {len(q['runs']['ours'])})")
    rows = [
        ("s", what + ", vs the row-by-row psycopg path", f"{sec['ours']:.1f} s", f"row by row {sec['rowwise']:.1f} s",
         f"{q['speedup_over_rowwise']:.1f}× faster (≥ 5×: {_verdict(q['speedup_over_rowwise'] >= 5)})"),
        ("s", what + ", vs `COPY … TO STDOUT` read by Polars", f"{sec['ours']:.1f} s", f"COPY {sec['copy']:.1f} s",
         f"{q['ours_over_copy']:.2f}× (≤ 1.5×: {_verdict(q['ours_over_copy'] <= 1.5)})"),
    ]
    if q.get("big"):
        ratio = q["big_over_small_peak"]
        what = f"peak RSS, {q['big_rows']:,} rows vs {q['rows']:,} rows from PostgreSQL ({q['big']['seconds']:.0f} s)"
        rows.append(("s", what, f"{q['big']['peak_rss_bytes'] / GB:.2f} GB",
                     f"{q['peak_rss_bytes'] / GB:.2f} GB", f"{ratio:.2f}× (flat, ≤ 1.2×: {_verdict(ratio <= 1.2)})"))
    return rows


def _loader_rows(r: dict) -> list[tuple[str, ...]]:
    """CPU of the whole process tree per acknowledged request while a sync loads at Braze's default limit."""
    c = r.get("loader")
    if not c:
        return []
    what = (f"loader CPU per acknowledged 75-object request, whole process tree, sync of {c['requests']:,} "
            f"requests at {c['limit']} ({c['requests_per_s']:.0f} req/s; ledger writes and progress watcher included)")
    cpu = c["cpu_ms_per_request"]
    return [("l", what, f"{cpu:.3f} ms", f"{c['cpu_s']:.1f} CPU-s over {c['load_s']:.1f} s",
             f"≤ 0.5 ms: {_verdict(cpu <= 0.5)}")]


def _packing_rows(r: dict) -> list[tuple[str, ...]]:
    """Requests planned against the minimum ceil(objects / 75)."""
    cases = []
    if r.get("e2e_backfill"):
        e = r["e2e_backfill"]
        cases.append((f"users-heavy backfill, {e['users']:,} users × 21 attributes (combined)",
                      e["planned_batches"], e["minimum_batches"], e["planned_objects"]))
    for key, c in ((r.get("history") or {}).get("cases") or {}).items():
        what = (f"history-heavy plan ({key.replace('_', ' ')}: {c['events']:,} events, "
                f"{c['purchases']:,} purchases; {c['batch_mode']})")
        cases.append((what, c["batches"], c["minimum_batches"], c["objects"]))
    rows = []
    for what, planned, minimum, objects in cases:
        ratio = planned / max(1, minimum)
        rows.append(("g", f"requests planned, {what}; {objects:,} objects", f"{planned:,}",
                     f"minimum {minimum:,}", f"{ratio:.4f} (≤ 1.01: {_verdict(ratio <= 1.01)})"))
    return rows


def _wall_rows(r: dict) -> list[tuple[str, ...]]:
    """End-to-end wall time of a backfill against what Braze's limit alone needs."""
    rows = []
    for key in ("e2e_backfill", "e2e_history"):
        e = r.get(key)
        if not e:
            continue
        need = e["requests"] / 1000
        what = (f"wall time, start to summary: backfill of {e['users']:,} users"
                + (" with their history" if key == "e2e_history" else " × 21 attributes")
                + f" ({e['requests']:,} requests at {e['limit']}, {'pipelined' if e['pipelined'] else 'not pipelined'}"
                + (f"; median of {len(e['rounds_total_s'])} runs: "
                   + ", ".join(f"{t:.1f}" for t in e["rounds_total_s"]) + " s" if e.get("rounds_total_s") else "")
                + ")")
        rows.append(("h", what, f"{e['total_s']:.1f} s", f"requests ÷ 1,000/s = {need:.1f} s",
                     f"{e['wall_over_limit']:.2f}× (≤ 1.25×: {_verdict(e['wall_over_limit'] <= 1.25)})"))
    return rows


def _e2e_rows(r: dict) -> list[tuple[str, ...]]:
    rows = []
    for key in ("e2e_backfill", "e2e_sync", "e2e_history"):
        e = r.get(key)
        if not e:
            continue
        w = e["windows"]
        what = (f"end to end {e['kind']} of {e['users']:,} users ({e['requests']:,} requests, {e['status']}): "
                f"plan {e['plan_s']:.1f} s, load {e['load_s']:.1f} s ({e['load_cpu_ms_per_request']:.2f} CPU-ms "
                f"per request), commit {e['commit_s']:.1f} s")
        share = f"load at {e['limit_share']:.1%} of {e['limit']}"
        if w.get("windows", 0) == 0:
            share += " (shorter than a window: a burst the limit allows)"
        elif w.get("mean") is not None:
            share += f"; complete windows mean {w['mean']:.1%}"
        if e["kind"] == "backfill":
            share += f" (≥ 95%: {_verdict(e['limit_share'] >= 0.95)})"
        rows.append(("e", what, f"{e['users_per_s']:,.0f} users/s", "", share))
    return rows


def _sustain_rows(r: dict) -> list[tuple[str, ...]]:
    s = r.get("sustain")
    if not s:
        return []
    w = s["windows"]
    if w.get("mean") is None:
        return [("acc", f"rate limit {s['limit']}: run too short for a complete window", "", "", "")]
    share_429 = s["server_throttled"] / max(1, s["server_requests"])
    what = (f"BrazeLoader at {s['limit']} vs sandbox at {s['limit']} ({s['rounds']} × {s['seconds']:.0f} s, "
            f"{w['windows']} complete 3 s windows; sandbox used {s['server_core_share']:.0%} of a core)")
    ours = (f"median of runs' mean {w['mean']:.1%} (windows {w['min']:.1%}–{w['max']:.1%}) of the limit; "
            f"429s {share_429:.2%}")
    ok = w["mean"] >= 0.95 and share_429 < 0.01
    return [("acc", what, ours, f"client {s['cpu_ms_per_request']:.3f} CPU-ms/request",
             f"mean ≥ 95% and < 1% 429: {_verdict(ok)}")]
