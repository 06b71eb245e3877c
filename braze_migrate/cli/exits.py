"""Exit codes of every sub-command: done, something left for the next run, bad configuration, stopped,
held by a guard (nothing sent: accept with --accept), state folder damaged (repair or restore it), state
folder not writable (disk full, read-only, another owner)."""

EXIT_OK, EXIT_PENDING, EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_HELD, EXIT_DAMAGED = 0, 1, 2, 3, 4, 5
EXIT_UNUSABLE = 6
