"""Git worktrees for `workspace: worktree` jobs: the git layer, ref names and start checks."""
