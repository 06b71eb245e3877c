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
    rows = [*_plan_rows(results), *_client_rows(results), *_memory_rows(results), *_e2e_rows(results),
            *_sustain_rows(results)]
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
        rows.append(("d", what, f"{m['peak_rss_bytes'] / GB:.2f} GB", "", f"< 3 GB: {_verdict(m['under_target'])}"))
    return rows


def _e2e_rows(r: dict) -> list[tuple[str, ...]]:
    rows = []
    for key in ("e2e_backfill", "e2e_sync"):
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
