"""`make bench`: the product's scale numbers as ratios measured in one run (`python -m bench --help`).

Modules: `data` (deterministic exports), `state` (an acknowledged state made by a backfill), `plans` (a),
`clients` (b, c), `memory` + `plan_child` + `rss` (d), `e2e` (e), `sustain` (rate-limit acceptance),
`table` (the printed table). `bench_client.py` and `bench_sandbox.py` are standalone micro-benchmarks.
"""
