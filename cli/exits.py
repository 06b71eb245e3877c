"""Exit codes of every sub-command: done, something left for the next run, bad configuration, stopped."""

EXIT_OK, EXIT_PENDING, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 3
