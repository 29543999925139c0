"""The coordinator: phases, scheduling, signals. The single writer of a job's state."""
