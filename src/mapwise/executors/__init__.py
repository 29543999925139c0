"""Where commands run: a command as a real subprocess, its capped log, and pools built on them."""
