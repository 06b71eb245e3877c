"""Commit: advance the acknowledged state (snapshot, contract, memo) from what Braze acknowledged (committer.py),
and the row accounting of the finished load: buckets, the rejects file, the in-doubt batches (accounting.py)."""
