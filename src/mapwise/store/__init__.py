"""The job's persistent state: one SQLite database per job, checkpoints, locks, paths."""
