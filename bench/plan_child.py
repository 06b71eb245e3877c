"""Plan one run in this process and print its time and peak RSS as JSON (run by `bench.memory` as a child).

    python -m bench.plan_child SOURCE STATE PLAN_DIR [--trace] [--batch-mode per_array]

Only the planning is measured: the process starts, imports, plans, reports its peak RSS (`VmHWM`, see
`bench.rss.peak_rss_bytes`) and exits, so the peak is the plan's own. `--trace` samples RSS every 50 ms
and reports the peak and the time per planner line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from bench.rss import PhaseTracer, peak_rss_bytes
from braze_migrate.plan.planner import build_plan
from connectors.state.snapshot import Snapshot


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("state", type=Path)
    parser.add_argument("plan_dir", type=Path)
    parser.add_argument("--trace", action="store_true", help="peak RSS per planner phase")
    parser.add_argument("--batch-mode", default="combined", choices=["combined", "per_array"])
    args = parser.parse_args(argv)
    baseline = peak_rss_bytes()
    tracer = PhaseTracer() if args.trace else None
    started = time.perf_counter()
    if tracer:
        tracer.start()
    info = build_plan(args.source, Snapshot(args.state), args.plan_dir, batch_size=75, batch_mode=args.batch_mode,
                      resend_in_doubt=False)
    seconds = time.perf_counter() - started
    if tracer:
        tracer.stop()
    report = {
        "seconds": seconds,
        "peak_rss_bytes": peak_rss_bytes(),
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_after_imports_bytes": baseline,
        "batches": info.batches,
        "objects": info.objects,
        "phases": tracer.phases() if tracer else None,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
