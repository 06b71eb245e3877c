"""Run-level features beside the nightly pipeline: user deletes, settling in-doubt batches, repairing the state
folder, retention of old runs, and verification against Braze."""
