"""Worktree mode on Dask: the workers make, use and commit the items' worktrees.

The session's LocalCluster runs on this machine, so its workers see the repository and
the job's worktree folder at the same paths (the check a run makes at the start of each
map phase passes); each item's commit is made on a worker and merged by the coordinator.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

JOB = "wt-dask"
ITEMS = ["a", "b", "c", "d"]


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def test_a_worktree_job_on_dask_commits_on_the_workers_and_merges_every_item(
    tmp_path: Path, dask_scheduler: str
) -> None:
    # Given a repository with a worktree workflow whose items each write their own file
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    _git(repo, "config", "user.name", "Tester")
    _git(repo, "config", "user.email", "tester@example.com")
    (repo / "items.json").write_text(json.dumps(ITEMS))
    (repo / "wf.yml").write_text(
        "name: wt-dask\n"
        "workspace: worktree\n"
        "map:\n"
        "  input: items.json\n"
        "  max_parallel: 2\n"
        "  agent_template:\n"
        '    - shell: "echo ${item} > out-${item}.txt"\n'
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "start")
    state = tmp_path / "state"

    # When it runs on the Dask cluster
    argv = [sys.executable, "-m", "mapwise", "run", "wf.yml", "--job-id", JOB, "-q"]
    done = subprocess.run(
        [*argv, "--executor", "dask", "--scheduler", dask_scheduler, "--state-dir", str(state)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    # Then it completed, each item's file is on the job branch through one merge each
    assert done.returncode == 0, done.stderr
    branch = f"mapwise/{JOB}/result"
    merges = _git(repo, "log", "--merges", "--format=%s", branch).split("\n")
    assert sorted(m for m in merges if m) == sorted(f"mapwise: merge {n}" for n in range(4))
    for n, item in enumerate(ITEMS):
        assert _git(repo, "show", f"{branch}:out-{item}.txt") == f"{item}\n", n
    # And the attempts ran on Dask workers, and no item worktree or branch is left
    conn = sqlite3.connect(state / "jobs" / JOB / "state.db")
    hosts = [row[0] for row in conn.execute("SELECT host FROM attempts")]
    conn.close()
    assert hosts and all("(" in host for host in hosts), hosts  # "host (worker address)"
    assert _git(repo, "branch", "--list", f"mapwise/{JOB}/item/*") == ""
    assert "/worktrees/wt-" not in _git(repo, "worktree", "list")
