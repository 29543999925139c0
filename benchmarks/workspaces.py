"""B6 workspaces: what ``workspace: worktree`` adds per item, and the merge queue's pace.

All of it runs on one synthetic repository of 10,000 small text files in 100 folders
(one commit), built once per invocation under ``benchmarks/.work/b6``.

- **Per-item cost.** The same job (N items at ``max_parallel`` 4, each step writing
  ``item-<index>.txt``) runs with ``workspace: worktree`` in the repository and with
  ``workspace: none`` in a plain copy of its files; the figure judged is
  ``(wall_worktree - wall_none) / N``, so it holds everything worktree mode adds: item
  worktrees made or re-pointed, commits, the merge queue, the pool removed at the end.
  Each worktree run checks that every item's commit reached the job branch.
- **The primitives**, timed directly through ``mapwise.workspace.git.Repo`` (one sample
  per run): a fresh ``git worktree add`` of the 10,000 files, a commit of one new file,
  the ``merge-tree`` check, the ``--no-ff`` merge into a job worktree, a pool worktree
  re-pointed to a new branch, and a worktree removed; beside them, the time this machine
  takes to write the same 10,000 files from Python (what a worktree's checkout cannot
  beat). Informational: they say where the per-item cost comes from.
- **Merge throughput.** M item branches of one commit each (one new file apiece, made
  with plumbing, so no worktree is involved) are merged one at a time into a fresh job
  branch with ``engine.workspaces.merge_one``, the merge queue's own call; items merged
  per second when merging is the only work.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from context import Context
from harness import bench_env, item_counts, log, mapwise_argv, run_timed
from results import Row, Section, at_least, at_most

FOLDERS = 100
FILES_PER_FOLDER = 100  # 10,000 files
PARALLELISM = 4
ITEMS = 40
QUICK_ITEMS = 20
MERGES = 50
QUICK_MERGES = 20
PER_ITEM_TARGET = 0.150  # seconds that worktree mode may add per item
MERGE_TARGET = 8.0  # items merged per second, at least
STEP = "echo $MAPWISE_ITEM_ID > item-$MAPWISE_ITEM_INDEX.txt"
IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def git(
    args: list[str], cwd: Path, *, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> str:
    """One git command of the set-up (not measured); its stdout, stripped."""
    done = subprocess.run(
        ["git", "-c", "gc.auto=0", "-c", "maintenance.auto=0", *args],
        cwd=cwd,
        env={**os.environ, **IDENTITY, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def write_files(folder: Path) -> None:
    """The 10,000 small text files, in ``FOLDERS`` folders."""
    for d in range(FOLDERS):
        sub = folder / f"d{d:03}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(FILES_PER_FOLDER):
            (sub / f"f{f:03}.txt").write_text(f"folder {d} file {f}\n" + "some text\n" * 8)


def write_job(folder: Path, mode: str, items: int) -> Path:
    """``items.json`` and ``wf-<mode>.yml`` in ``folder``: one shell step per item."""
    (folder / "items.json").write_text(json.dumps([{"n": i} for i in range(items)]) + "\n")
    workflow = folder / f"wf-{mode}.yml"
    workflow.write_text(
        f"name: b6-{mode}\n"
        f"workspace: {mode}\n"
        "map:\n"
        "  input: items.json\n"
        f"  max_parallel: {PARALLELISM}\n"
        "  agent_template:\n"
        f"    - shell: {json.dumps(STEP)}\n"
    )
    return workflow


def build_repo(folder: Path, items: int) -> str:
    """The synthetic repository (files, workflow, items) in one commit; its commit id."""
    started = time.perf_counter()
    folder.mkdir(parents=True)
    write_files(folder)
    write_job(folder, "worktree", items)
    git(["init", "--quiet", "--initial-branch=main"], folder)
    git(["config", "user.name", "bench"], folder)
    git(["config", "user.email", "bench@localhost"], folder)
    git(["add", "-A"], folder)
    git(["commit", "--quiet", "-m", "10,000 files"], folder)
    log(f"  built the 10,000-file repository in {time.perf_counter() - started:.1f} s")
    return git(["rev-parse", "HEAD"], folder)


def build_plain(folder: Path, items: int) -> Path:
    """The same files without git, for the ``workspace: none`` job."""
    folder.mkdir(parents=True)
    write_files(folder)
    return write_job(folder, "none", items)


def run_job(workflow: Path, state: Path, job_id: str, output: Path) -> float:
    """Run the job to its end from its folder; its wall time (process start-up included)."""
    argv = mapwise_argv("run", workflow.name, "--state-dir", str(state), "--job-id", job_id)
    done = run_timed([*argv, "--quiet"], output, env=bench_env(), cwd=workflow.parent)
    if done.code != 0:
        raise RuntimeError(f"job {job_id} exited {done.code}: see {output}")
    return done.wall


def check_merged(repo: Path, base: str, state: Path, job_id: str, items: int) -> None:
    """Every item succeeded, its commit and its merge on the job branch, no pool left."""
    counts = item_counts(state / "jobs" / job_id / "state.db")
    if counts != {"succeeded": items}:
        raise RuntimeError(f"job {job_id} ended with items {counts}, not {items} succeeded")
    added = int(git(["rev-list", "--count", f"{base}..mapwise/{job_id}/result"], repo))
    if added != 2 * items:
        raise RuntimeError(f"job {job_id}'s branch has {added} new commits, not {2 * items}")
    left = list((state / "jobs" / job_id / "worktrees").glob("wt-*"))
    if left:
        raise RuntimeError(f"job {job_id} left {len(left)} item worktrees")


@dataclass
class Primitives:
    """One sample per run of each ``Repo`` call, in seconds."""

    add: list[float] = field(default_factory=list)
    commit: list[float] = field(default_factory=list)
    check: list[float] = field(default_factory=list)
    merge: list[float] = field(default_factory=list)
    repoint: list[float] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)
    files: list[float] = field(default_factory=list)  # the 10,000 files written, no git


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def time_primitives(repo_dir: Path, base: str, folder: Path, run: int, into: Primitives) -> None:
    """An item's life through the library: worktree added, commit, check, merge, re-point,
    removal; each call timed once."""
    from mapwise.workspace.git import Repo

    repo = Repo(repo_dir)
    job_wt, item_wt = folder / f"job-{run}", folder / f"item-{run}"
    repo.add_worktree(job_wt, f"bench/{run}/job", base)
    into.add.append(timed(lambda: repo.add_worktree(item_wt, f"bench/{run}/item", base)))
    (item_wt / "d000" / f"new-{run}.txt").write_text("an item's work\n")
    into.commit.append(timed(lambda: repo.commit_all(item_wt, "an item")))
    head = repo.head(item_wt)
    into.check.append(timed(lambda: repo.merge_conflicts(base, head)))
    into.merge.append(timed(lambda: repo.merge(job_wt, f"bench/{run}/item", "merge")))
    job_head = repo.head(job_wt)
    into.repoint.append(
        timed(lambda: repo.repoint_worktree(item_wt, f"bench/{run}/next", job_head))
    )
    into.remove.append(timed(lambda: repo.remove_worktree(item_wt)))
    repo.remove_worktree(job_wt)
    scratch = folder / f"scratch-{run}"
    into.files.append(timed(lambda: write_files(scratch)))
    shutil.rmtree(scratch)


def item_branches(repo: Path, base: str, count: int, prefix: str) -> list[tuple[str, str]]:
    """``count`` branches ``<prefix>/<i>`` of one commit each on ``base``, adding one file
    apiece (plumbing through a scratch index: no worktree); (branch, commit) pairs."""
    index = repo / ".git" / f"bench-index-{prefix.replace('/', '-')}"
    env = {"GIT_INDEX_FILE": str(index)}
    blob = git(["hash-object", "-w", "--stdin"], repo, stdin="an item's work\n")
    made = []
    for i in range(count):
        git(["read-tree", base], repo, env=env)
        path = f"d{i % FOLDERS:03}/item-{prefix.replace('/', '-')}-{i}.txt"
        git(["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], repo, env=env)
        tree = git(["write-tree"], repo, env=env)
        commit = git(["commit-tree", tree, "-p", base, "-m", f"item {i}"], repo)
        branch = f"{prefix}/{i}"
        git(["update-ref", f"refs/heads/{branch}", commit], repo)
        made.append((branch, commit))
    index.unlink(missing_ok=True)
    return made


def merge_rate(repo_dir: Path, base: str, folder: Path, run: int, count: int) -> float:
    """Items merged per second by ``merge_one``, one at a time, into a fresh job branch."""
    from mapwise.domain.records import MergeTask
    from mapwise.engine.workspaces import JobWorkspace, merge_one
    from mapwise.workspace.git import Repo

    repo = Repo(repo_dir)
    branches = item_branches(repo_dir, base, count, f"bench/q{run}")
    job_wt = folder / f"queue-{run}"
    repo.add_worktree(job_wt, f"bench/q{run}-job", base)
    ws = JobWorkspace(repo_dir, f"bench/q{run}-job", job_wt, base, "", folder)
    tasks = [
        MergeTask(i, str(i), i, branch, commit, 1, None)
        for i, (branch, commit) in enumerate(branches)
    ]
    started = time.perf_counter()
    for task in tasks:
        result = merge_one(ws, task, None)
        if not result.merged:
            raise RuntimeError(f"merge of {task.branch} failed: {result}")
    seconds = time.perf_counter() - started
    repo.remove_worktree(job_wt)
    return count / seconds


def workspaces(ctx: Context) -> Section:
    """B6: the per-item cost of worktree mode, its git primitives, the merge queue's rate."""
    items = QUICK_ITEMS if ctx.quick else ITEMS
    merges = QUICK_MERGES if ctx.quick else MERGES
    folder = ctx.workspace("b6")
    log(f"B6: {FOLDERS * FILES_PER_FOLDER:,}-file repository, {items} items per job")
    repo, plain = folder / "repo", folder / "plain"
    base = build_repo(repo, items)
    build_plain(plain, items)
    with_wt: list[float] = []
    without: list[float] = []
    per_item: list[float] = []
    rates: list[float] = []
    prims = Primitives()
    try:
        for run in range(ctx.runs):
            state = folder / f"state-{run}"
            none_wall = run_job(plain / "wf-none.yml", state, f"none{run}", folder / "none.out")
            wt_wall = run_job(repo / "wf-worktree.yml", state, f"wt{run}", folder / "wt.out")
            check_merged(repo, base, state, f"wt{run}", items)
            without.append(none_wall)
            with_wt.append(wt_wall)
            per_item.append((wt_wall - none_wall) / items)
            time_primitives(repo, base, folder, run, prims)
            rates.append(merge_rate(repo, base, folder, run, merges))
            log(
                f"  run {run + 1}: worktree {wt_wall:.2f} s, none {none_wall:.2f} s, "
                f"{per_item[-1] * 1000:.0f} ms per item; worktree add {prims.add[-1]:.3f} s, "
                f"{rates[-1]:.1f} merges/s"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    job = f"{items} items, max_parallel {PARALLELISM}, 10,000 files"
    ms = [
        ("`git worktree add` of 10,000 files (Repo.add_worktree)", prims.add),
        ("commit of one new file (Repo.commit_all)", prims.commit),
        ("merge check (Repo.merge_conflicts, merge-tree)", prims.check),
        ("merge --no-ff into the job worktree (Repo.merge)", prims.merge),
        ("re-point a pool worktree (Repo.repoint_worktree)", prims.repoint),
        ("remove a worktree (Repo.remove_worktree)", prims.remove),
        ("baseline: the same 10,000 files written by Python, no git", prims.files),
    ]
    rows = [
        Row(
            "B6",
            "cost worktree mode adds per item",
            tuple(per_item),
            "s",
            at_most(PER_ITEM_TARGET),
            job,
        ),
        Row("B6", "job wall time, workspace: worktree", tuple(with_wt), "s"),
        Row("B6", "job wall time, workspace: none", tuple(without), "s"),
        *(Row("B6", measure, tuple(v * 1000 for v in values), "ms") for measure, values in ms),
        Row(
            "B6",
            "merge queue throughput (merge_one, one at a time)",
            tuple(rates),
            "items/s",
            at_least(MERGE_TARGET),
            f"{merges} one-commit branches",
        ),
    ]
    notes = [
        "B6 per-item cost is (wall with `workspace: worktree` - wall with `workspace: none`) "
        "/ items, the same job run in the repository and in a plain copy of its files; the "
        "`Repo` rows time one call each per run, outside any job"
    ]
    return Section(rows, notes)
