"""Plan: read an export, normalize and diff it against the acknowledged state, guard it, and write the numbered
request batches of a run (planner.py); the contract of attribute types, the memo of unchanged users, the guards."""
