"""Run: the orchestration of one run, the only room that calls the others: the Engine (state, ledger, lock), the
stage functions the flows and the CLI call (stages.py), the pipelined backfill, load workers, the dry run."""
