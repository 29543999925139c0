"""Crash torture of a worktree job: ``kill -9`` the coordinator at random moments of the
map phase and of merges, resume, until the job completes; then nothing is lost or doubled.

A job of 40 items on 4 slots runs over a real repository (``workspace: {kind: worktree,
repo: ...}``, the workflow in a project folder outside the repository). Each item sleeps
a random short time and writes many files (so that its merge takes long enough to be hit);
half of the items commit by themselves, as an agent would, the others leave their changes
for mapwise to commit. The coordinator (alone: its commands run in sessions of their own)
is killed with ``kill -9`` at a random moment of one of three kinds: a few item starts
into the round, while a merge holds the job worktree's index (``index.lock``, polled), or
any time in the first second and a half. Each kill is followed by a resume, which may be
killed in turn, until a round finishes with exit 0.

Then, for each job: every item's files are on the job branch, from exactly one commit of
it; every item is merged exactly once (``mapwise: merge <id>`` once on the job branch); no
item branch or item worktree is left; no process of the job is alive; ``mapwise verify``
is clean; and at the end ``git fsck`` of the repository is clean. The short version (CI)
makes 10 kills; ``--long`` (or ``MAPWISE_RELIABILITY_LONG=1``) makes 200, starting a new
job in the same repository whenever one completes, and prints the figures.

The seed is printed; ``MAPWISE_WORKTREE_TORTURE_SEED=N`` replays it (kill moments depend
on timing too, so a replay is close, not exact).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.jobs import Coordinator, Workspace, item_command
from helpers.processes import job_processes
from helpers.reliability import seed_from
from helpers.worktrees import (
    fsck,
    git,
    item_branches,
    item_worktrees,
    job_branch,
    merged_items,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

TOTAL_ITEMS = 40
MAX_PARALLEL = 4
FILES_PER_ITEM = 100  # many files make each merge (and commit) long enough to be hit
SHORT_KILLS = 10
LONG_KILLS = 200
ANYTIME_SECONDS = 1.5
POLL = 0.0005  # fine polling: an index.lock of a merge lives for milliseconds
WAIT_SECONDS = 60.0  # a bound on any wait: a hang fails the test, speed never does
MOMENTS = ("map", "merge", "merge", "anytime")  # a merge is hit in two rounds of four


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """The project folder (workflow, items, markers, state), outside the repository."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    workspace = Workspace(root)
    try:
        yield workspace
    finally:
        workspace.cleanup()


@dataclass
class Figures:
    """What one torture run measured, over every job it ran."""

    seed: int
    jobs: int = 0
    kills: int = 0
    moments: Counter[str] = field(default_factory=Counter)
    mid_merge: int = 0  # kills that left the job worktree's index.lock or MERGE_HEAD
    commits_lost: int = 0  # items whose files are not all on the job branch
    committed_twice: int = 0  # items with more than one commit on the job branch
    merged_twice: int = 0  # items with more than one merge commit
    leaked_worktrees: int = 0
    leaked_branches: int = 0
    seconds: float = 0.0

    def report(self) -> str:
        return (
            f"worktree torture figures (seed {self.seed}): {self.jobs} job(s) of "
            f"{TOTAL_ITEMS} items on {MAX_PARALLEL} slots, {self.kills} kill -9 rounds "
            f"(moments {dict(self.moments)}; {self.mid_merge} left a merge in progress) "
            f"in {self.seconds:.0f}s; commits lost: {self.commits_lost}; committed twice: "
            f"{self.committed_twice}; merged twice: {self.merged_twice}; leaked worktrees: "
            f"{self.leaked_worktrees}; leaked branches: {self.leaked_branches}"
        )


def _items(rng: random.Random) -> list[dict[str, str]]:
    return [
        {
            "id": f"i{n:02d}",
            "s": rng.choice(("0", "0.02", "0.05", "0.1")),
            "own": "yes" if n % 2 else "no",  # odd items commit by themselves
        }
        for n in range(TOTAL_ITEMS)
    ]


def _write_workflow(ws: Workspace, repo: Path, rng: random.Random) -> None:
    """Items that sleep, write ``d-<id>/f1..fN``, and (half of them) commit them."""
    body = (
        'sleep ${item.s}; mkdir -p "d-${item.id}"; k=0; '
        f"while [ $k -lt {FILES_PER_ITEM} ]; do k=$((k + 1)); "
        'echo "${item.id} $k" > "d-${item.id}/f$k"; done; '
        # an agent's commit, idempotent: a continued step may run it a second time
        '[ "${item.own}" = no ] || { git add -A && '
        '{ git diff --cached --quiet || git commit --quiet -m "agent ${item.id}"; }; }'
    )
    ws.write_workflow([item_command(body)], items=_items(rng), max_parallel=MAX_PARALLEL)
    spec = json.loads(ws.workflow_path.read_text())
    spec["workspace"] = {"kind": "worktree", "repo": str(repo)}
    ws.workflow_path.write_text(json.dumps(spec, indent=2))


def _job_gitdir(ws: Workspace, job: str) -> Path | None:
    """The git folder of the job's worktree (where a merge's index.lock appears)."""
    worktree = ws.state_dir / "jobs" / job / "worktrees" / "result"
    if not (worktree / ".git").is_file():
        return None
    found = git(worktree, "rev-parse", "--absolute-git-dir", check=False).strip()
    return Path(found) if found else None  # None while git is still making it


def _merging(gitdir: Path | None) -> bool:
    return gitdir is not None and (
        (gitdir / "index.lock").exists() or (gitdir / "MERGE_HEAD").exists()
    )


def _item_starts(ws: Workspace, since: int) -> int:
    return sum(1 for m in ws.starts(since) if m.name.startswith("i"))


def _wait(coordinator: Coordinator, condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` finely; False if the coordinator ended first."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return True
        if not coordinator.running():
            return False
        time.sleep(POLL)
    raise AssertionError("timed out waiting for a kill moment")


def _kill_at_random(
    ws: Workspace,
    job: str,
    coordinator: Coordinator,
    rng: random.Random,
    since: int,
    first: bool,
) -> str | None:
    """``kill -9`` the coordinator at a random moment; its kind, or None if it ended.

    The first round of a job always waits for an item to start, so that the job exists.
    """
    moment = "map" if first else rng.choice(MOMENTS)
    if moment == "anytime":
        deadline = time.monotonic() + rng.uniform(0.0, ANYTIME_SECONDS)
        while time.monotonic() < deadline and coordinator.running():
            time.sleep(0.005)
    elif moment == "map":
        wanted = rng.randint(1, 2 * MAX_PARALLEL)
        if not _wait(coordinator, lambda: _item_starts(ws, since) >= wanted):
            return None
        time.sleep(rng.uniform(0.0, 0.05))
    else:
        gitdir: list[Path | None] = [None]

        def merging() -> bool:
            if gitdir[0] is None:
                gitdir[0] = _job_gitdir(ws, job)
            return _merging(gitdir[0])

        if not _wait(coordinator, merging):
            return None
        time.sleep(rng.uniform(0.0, 0.002))
    if not coordinator.running():
        return None
    returncode = coordinator.kill9()
    if returncode != -signal.SIGKILL:  # it ended in the instant before the kill
        assert returncode == 0, coordinator.stderr
        return None
    return moment


def _torture_job(
    ws: Workspace, job: str, rng: random.Random, max_kills: int, figures: Figures
) -> None:
    """Run the job, killing and resuming it until it completes (at most ``max_kills``
    kills; then a last resume must finish it with exit 0)."""
    kills = 0
    while True:
        since = ws.marker_offset()
        coordinator = ws.start_run(job) if kills == 0 else ws.start_resume(job)
        moment = None
        if kills < max_kills:
            moment = _kill_at_random(ws, job, coordinator, rng, since, first=kills == 0)
        if moment is None:
            assert coordinator.wait() == 0, coordinator.stderr
            figures.kills += kills
            return
        kills += 1
        figures.moments[moment] += 1
        figures.mid_merge += _merging(_job_gitdir(ws, job))


def _files_on_branch(repo: Path, branch: str, item_id: str, on_branch: set[str]) -> bool:
    """Whether all of an item's files are in the job branch's tree, the last one whole."""
    wanted = {f"d-{item_id}/f{k}" for k in range(1, FILES_PER_ITEM + 1)}
    if not wanted <= on_branch:
        return False
    last = git(repo, "show", f"{branch}:d-{item_id}/f{FILES_PER_ITEM}")
    return last == f"{item_id} {FILES_PER_ITEM}\n"


def _check_job(ws: Workspace, repo: Path, job: str, figures: Figures) -> list[str]:
    """Count what the job lost, doubled or leaked into ``figures``; the problems found."""
    problems: list[str] = []
    ids = [f"i{n:02d}" for n in range(TOTAL_ITEMS)]
    branch = job_branch(job)
    job_worktree = ws.state_dir / "jobs" / job / "worktrees" / "result"

    merges = Counter(merged_items(repo, job))
    twice = sorted(i for i, n in merges.items() if n > 1)
    figures.merged_twice += len(twice)
    if twice or set(merges) != set(ids):
        problems.append(f"{job}: merged twice {twice}, never {sorted(set(ids) - set(merges))}")

    subjects = Counter(
        git(repo, "log", "--no-merges", "--format=%s", f"HEAD..{branch}").splitlines()
    )
    for item_id in ids:
        made = subjects[f"mapwise: {item_id}"] + subjects[f"agent {item_id}"]
        if made != 1:
            figures.committed_twice += made > 1
            problems.append(f"{job}: {item_id} has {made} commits on the job branch")

    on_branch = set(git(repo, "ls-tree", "-r", "--name-only", branch).splitlines())
    lost = [i for i in ids if not _files_on_branch(repo, branch, i, on_branch)]
    figures.commits_lost += len(lost)
    if lost:
        problems.append(f"{job}: files of {lost} are not on the job branch")
    if git(job_worktree, "status", "--porcelain"):
        problems.append(f"{job}: the job worktree is not clean")

    leaked = item_worktrees(repo, ws.state_dir / "jobs" / job / "worktrees")
    branches = item_branches(repo, job)
    figures.leaked_worktrees += len(leaked)
    figures.leaked_branches += len(branches)
    if leaked or branches:
        problems.append(f"{job}: left worktrees {leaked} and branches {branches}")

    db = ws.db(job)
    if db.item_ids_with("succeeded") != set(ids):
        problems.append(f"{job}: items not succeeded: {db.statuses()}")
    if job_processes(job):
        problems.append(f"{job}: processes left {job_processes(job)}")
    verified = ws.inspect("verify", job)
    if verified.returncode != 0:
        problems.append(f"{job}: verify: {verified.stdout}{verified.stderr}")
    return problems


def test_kill9_during_items_and_merges_loses_no_commit_and_merges_each_once(
    ws: Workspace, repo: Path, long_run: bool
) -> None:
    # Given a seed, a kill budget (10, or 200 with --long) and a real repository
    seed = seed_from("MAPWISE_WORKTREE_TORTURE_SEED")
    budget = LONG_KILLS if long_run else SHORT_KILLS
    figures = Figures(seed)
    started = time.monotonic()
    problems: list[str] = []
    while figures.kills < budget:
        job = f"wt{os.getpid()}-{figures.jobs}"
        rng = random.Random(seed + figures.jobs)
        _write_workflow(ws, repo, rng)

        # When the coordinator is killed with kill -9 at random moments, each time
        # resumed, until the job completes
        _torture_job(ws, job, rng, budget - figures.kills, figures)
        figures.jobs += 1

        # Then no commit is lost or doubled, no item is merged twice, nothing leaks
        problems += _check_job(ws, repo, job, figures)
    figures.seconds = time.monotonic() - started
    print(figures.report())
    checked = fsck(repo)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert problems == []
    assert figures.kills == budget
