"""Load: walk a plan's batches through the Braze client, ledgering each request before it leaves and after Braze
answers (applier.py); the credentials check before a run (preflight.py)."""
