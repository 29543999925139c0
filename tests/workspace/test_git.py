"""The git layer of worktree mode, on real repositories."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mapwise.errors import GitError, WorkspaceError
from mapwise.workspace import command
from mapwise.workspace.git import GIT_OPTIONS, MIN_VERSION, Repo, git_version, run_git

Git = Callable[..., str]  # the `git` fixture: git(cwd, *args) -> stdout


def commit_file(git: Git, worktree: Path, name: str, text: str, message: str) -> None:
    (worktree / name).parent.mkdir(parents=True, exist_ok=True)
    (worktree / name).write_text(text)
    git(worktree, "add", "-A")
    git(worktree, "commit", "--quiet", "-m", message)


# -- run_git --------------------------------------------------------------------------


def test_run_git_turns_automatic_gc_and_maintenance_off(repo: Path) -> None:
    assert GIT_OPTIONS == ("-c", "gc.auto=0", "-c", "maintenance.auto=0")
    assert run_git(["config", "gc.auto"], cwd=repo).stdout.strip() == "0"
    assert run_git(["config", "maintenance.auto"], cwd=repo).stdout.strip() == "0"


def test_run_git_failure_holds_gits_output_in_full(repo: Path) -> None:
    with pytest.raises(GitError) as caught:
        run_git(["rev-parse", "--verify", "no-such-branch"], cwd=repo)
    message = str(caught.value)
    assert "git rev-parse --verify no-such-branch failed in" in message
    assert "(exit 128)" in message
    assert "fatal: Needed a single revision" in message
    assert caught.value.exit_code == 1


def test_run_git_without_check_returns_the_failure(repo: Path) -> None:
    result = run_git(["rev-parse", "--verify", "--quiet", "nope"], cwd=repo, check=False)
    assert result.returncode == 1


def test_run_git_ignores_an_inherited_git_dir(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a GIT_DIR inherited from a caller that points somewhere else
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    # Then the cwd still names the repository
    assert run_git(["rev-parse", "--show-toplevel"], cwd=repo).stdout.strip() == str(repo)


def test_run_git_in_a_missing_folder_is_a_git_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="could not start"):
        run_git(["status"], cwd=tmp_path / "gone")


def test_git_version_is_new_enough_here() -> None:
    version = git_version()
    assert len(version) == 3
    assert version[:2] >= MIN_VERSION


def test_a_held_index_lock_is_waited_for(repo: Path) -> None:
    # Given another git holding the index lock, released 0.3 s later
    lock = repo / ".git" / "index.lock"
    lock.write_text("")
    releaser = threading.Timer(0.3, lock.unlink)
    releaser.start()
    # When mapwise writes the index meanwhile
    (repo / "README.md").write_text("changed\n")
    try:
        sha = Repo(repo).commit_all(repo, "while locked")
    finally:
        releaser.join()
    # Then it waited and succeeded
    assert sha is not None


def test_a_lock_held_for_good_fails_with_gits_message(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "_RETRY_TOTAL", 0.2)
    (repo / ".git" / "index.lock").write_text("")
    (repo / "README.md").write_text("changed\n")
    with pytest.raises(GitError, match="index.lock': File exists"):
        Repo(repo).commit_all(repo, "never")


# -- Repo -------------------------------------------------------------------------------


def test_repo_from_a_subfolder(repo: Path) -> None:
    found = Repo(repo / "src")
    assert found.toplevel == repo.resolve()
    assert found.common_dir == (repo / ".git").resolve()


def test_repo_from_a_linked_worktree_shares_the_common_dir(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "linked wt"
    Repo(repo).add_worktree(wt, "side", "HEAD")
    linked = Repo(wt)
    assert linked.toplevel == wt.resolve()
    assert linked.common_dir == (repo / ".git").resolve()


def test_repo_refuses_a_folder_outside_git(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(WorkspaceError, match="not inside a git repository"):
        Repo(plain)
    with pytest.raises(WorkspaceError, match="not a folder"):
        Repo(tmp_path / "missing")


def test_repo_refuses_a_bare_repository(git: Git, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "--quiet", "--bare", str(bare))
    with pytest.raises(WorkspaceError, match="bare repository"):
        Repo(bare)


def test_rev_parse_and_branches(repo: Path, git: Git) -> None:
    r = Repo(repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    assert r.rev_parse("HEAD") == head
    assert r.rev_parse("main") == head
    assert r.rev_parse("HEAD~1") == git(repo, "rev-parse", "HEAD~1").strip()
    assert r.rev_parse("nope") is None
    assert r.rev_parse("--all") is None  # never read as an option
    assert r.rev_parse("HEAD:README.md") is None  # a blob, not a commit
    git(repo, "branch", "mapwise/j1/result")
    git(repo, "branch", "mapwise/j1/item/a")
    git(repo, "branch", "mapwise/j10/result")
    assert r.branch_exists("mapwise/j1/result")
    assert not r.branch_exists("mapwise/j1")
    assert r.branches_under("mapwise/j1/") == ["mapwise/j1/item/a", "mapwise/j1/result"]
    assert r.branches_under("mapwise/j2/") == []


# -- worktrees --------------------------------------------------------------------------


def test_add_worktree_makes_the_branch_at_start(repo: Path, tmp_path: Path, git: Git) -> None:
    r = Repo(repo)
    start = r.rev_parse("HEAD~1")
    assert start is not None
    wt = tmp_path / "work trees" / "item ü 1"
    r.add_worktree(wt, "mapwise/j/item/a", start)
    assert (wt / "README.md").exists()
    assert not (wt / "notes").exists()  # the first commit's tree
    assert r.head(wt) == start
    assert r.worktree_paths()[wt.resolve()] == "mapwise/j/item/a"
    assert r.worktree_paths()[repo.resolve()] == "main"
    # the user's checkout is untouched
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "branch", "--show-current").strip() == "main"


def test_add_worktree_force_creates_an_existing_branch(repo: Path, tmp_path: Path, git: Git) -> None:
    r = Repo(repo)
    git(repo, "branch", "stale", "HEAD~1")
    r.add_worktree(tmp_path / "wt", "stale", "HEAD")
    assert r.rev_parse("stale") == r.rev_parse("HEAD")


def test_add_worktree_that_fails_leaves_nothing(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    with pytest.raises(GitError):
        r.add_worktree(tmp_path / "wt", "x", "no-such-start")
    assert not (tmp_path / "wt").exists()
    assert len(r.worktree_paths()) == 1


def test_repoint_worktree_reuses_the_folder(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    wt = tmp_path / "slot 0"
    r.add_worktree(wt, "mapwise/j/item/a", "HEAD")
    # Given the previous item left changes, untracked files and ignored files
    (wt / "README.md").write_text("changed\n")
    (wt / "new dir").mkdir()
    (wt / "new dir" / "junk.txt").write_text("junk\n")
    (wt / "run.log").write_text("ignored\n")
    (wt / ".venv").mkdir()
    (wt / ".venv" / "python").write_text("kept\n")
    # When the folder is re-pointed at another branch and start
    start = r.rev_parse("HEAD~1")
    assert start is not None
    r.repoint_worktree(wt, "mapwise/j/item/b", start)
    # Then it is clean at the new start, on the new branch, ignored files kept
    assert r.head(wt) == start
    assert r.worktree_paths()[wt.resolve()] == "mapwise/j/item/b"
    assert not r.is_dirty(wt)
    assert (wt / "README.md").read_text() == "# demo\nline two\n"
    assert not (wt / "new dir").exists()
    assert (wt / "run.log").exists()
    assert (wt / ".venv" / "python").exists()
    assert r.branch_exists("mapwise/j/item/a")  # the previous branch stays


def test_attach_worktree_rebuilds_a_lost_folder(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    wt = tmp_path / "item a"
    r.add_worktree(wt, "mapwise/j/item/a", "HEAD")
    commit_sha = _commit_change(r, wt, "work.txt")
    # Given the folder vanished (its record remains)
    _rmtree(wt)
    # When it is rebuilt from its branch
    r.attach_worktree(wt, "mapwise/j/item/a")
    # Then the branch's commit is there, with no new commit
    assert r.head(wt) == commit_sha
    assert (wt / "work.txt").exists()
    assert r.worktree_paths()[wt.resolve()] == "mapwise/j/item/a"


def test_remove_worktree_with_changes(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    wt = tmp_path / "item a"
    r.add_worktree(wt, "mapwise/j/item/a", "HEAD")
    (wt / "README.md").write_text("dirty\n")
    (wt / "untracked.txt").write_text("x\n")
    r.remove_worktree(wt)
    assert not wt.exists()
    assert wt.resolve() not in r.worktree_paths()
    assert r.branch_exists("mapwise/j/item/a")


def test_remove_worktree_whose_folder_is_gone_prunes(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    wt = tmp_path / "item a"
    r.add_worktree(wt, "mapwise/j/item/a", "HEAD")
    _rmtree(wt)
    assert wt.resolve() in r.worktree_paths()
    r.remove_worktree(wt)
    assert wt.resolve() not in r.worktree_paths()


def test_prune_worktrees_forgets_records_of_lost_folders(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    kept, lost = tmp_path / "kept", tmp_path / "lost"
    r.add_worktree(kept, "a", "HEAD")
    r.add_worktree(lost, "b", "HEAD")
    _rmtree(lost)
    r.prune_worktrees()
    assert set(r.worktree_paths()) == {repo.resolve(), kept.resolve()}


def test_worktree_paths_shows_a_detached_head_as_none(repo: Path, tmp_path: Path, git: Git) -> None:
    git(repo, "worktree", "add", "--quiet", "--detach", str(tmp_path / "det"), "HEAD")
    assert Repo(repo).worktree_paths()[(tmp_path / "det").resolve()] is None


# -- commits ----------------------------------------------------------------------------


def test_commit_all_commits_everything_with_the_repository_author(
    repo: Path, tmp_path: Path, git: Git
) -> None:
    r = Repo(repo)
    wt = tmp_path / "item a"
    r.add_worktree(wt, "mapwise/j/item/a", "HEAD")
    (wt / "README.md").write_text("edited\n")
    (wt / "dossier ü").mkdir()
    (wt / "dossier ü" / "new file.txt").write_text("new\n")
    (wt / "notes" / "ü file.txt").unlink()
    (wt / "debug.log").write_text("ignored\n")
    sha = r.commit_all(wt, "mapwise: item a")
    assert sha == r.head(wt) == r.rev_parse("mapwise/j/item/a")
    assert not r.is_dirty(wt)
    shown = git(wt, "show", "--quiet", "--format=%an <%ae>|%cn <%ce>|%s", "HEAD").strip()
    assert shown == "Repo Owner <owner@example.com>|Repo Owner <owner@example.com>|mapwise: item a"
    files = git(wt, "show", "--name-status", "--format=", "-z", "HEAD").split("\0")
    assert "dossier ü/new file.txt" in files
    assert "notes/ü file.txt" in files
    assert "debug.log" not in files


def test_commit_all_with_nothing_to_commit(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    wt = tmp_path / "item a"
    r.add_worktree(wt, "b", "HEAD")
    before = r.head(wt)
    (wt / "only.log").write_text("ignored\n")
    assert r.commit_all(wt, "nothing") is None
    assert r.head(wt) == before


def test_commit_all_without_user_config_uses_mapwise(repo: Path, git: Git) -> None:
    # Given no user.name/user.email anywhere (HOME is empty, system config off)
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    (repo / "README.md").write_text("edited\n")
    sha = Repo(repo).commit_all(repo, "mapwise: x")
    assert sha is not None
    shown = git(repo, "show", "--quiet", "--format=%an <%ae>|%cn <%ce>", sha).strip()
    assert shown == "mapwise <mapwise@localhost>|mapwise <mapwise@localhost>"
    # and nothing was written to the repository's config
    assert git(repo, "config", "--get", "user.name", check=False) == ""


def test_commit_all_keeps_a_configured_name_when_only_the_email_is_missing(
    repo: Path, git: Git
) -> None:
    git(repo, "config", "--unset", "user.email")
    (repo / "README.md").write_text("edited\n")
    sha = Repo(repo).commit_all(repo, "m")
    assert sha is not None
    shown = git(repo, "show", "--quiet", "--format=%an <%ae>", sha).strip()
    assert shown == "Repo Owner <mapwise@localhost>"


def test_commit_all_skips_hooks(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    (repo / "README.md").write_text("edited\n")
    assert Repo(repo).commit_all(repo, "m") is not None


# -- merges -----------------------------------------------------------------------------


def _commit_change(r: Repo, wt: Path, name: str, text: str = "x\n") -> str:
    (wt / name).write_text(text)
    sha = r.commit_all(wt, f"change {name}")
    assert sha is not None
    return sha


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


@pytest.fixture
def job(repo: Path, tmp_path: Path) -> tuple[Repo, Path]:
    """The repository and a job worktree on ``mapwise/j/result``."""
    r = Repo(repo)
    wt = tmp_path / "job wt"
    r.add_worktree(wt, "mapwise/j/result", "HEAD")
    return r, wt


def test_merge_conflicts_clean(job: tuple[Repo, Path], tmp_path: Path) -> None:
    r, _ = job
    r.add_worktree(tmp_path / "a", "item-a", "mapwise/j/result")
    r.add_worktree(tmp_path / "b", "item-b", "mapwise/j/result")
    _commit_change(r, tmp_path / "a", "a.txt")
    _commit_change(r, tmp_path / "b", "b.txt")
    assert r.merge_conflicts("item-a", "item-b") == []
    assert r.merge_conflicts("mapwise/j/result", "item-a") == []


def test_merge_conflicts_lists_the_conflicting_paths(
    job: tuple[Repo, Path], tmp_path: Path
) -> None:
    r, _ = job
    for name, text in (("a", "one\n"), ("b", "two\n")):
        wt = tmp_path / name
        r.add_worktree(wt, f"item-{name}", "mapwise/j/result")
        (wt / "README.md").write_text(f"# demo\n{text}")
        (wt / "notes" / "ü file.txt").write_text(text)
        (wt / f"only-{name}.txt").write_text(text)
        assert r.commit_all(wt, name) is not None
    conflicts = r.merge_conflicts("item-a", "item-b")
    assert sorted(conflicts) == ["README.md", "notes/ü file.txt"]


def test_merge_conflicts_of_an_unknown_branch_is_a_git_error(job: tuple[Repo, Path]) -> None:
    r, _ = job
    with pytest.raises(GitError):
        r.merge_conflicts("mapwise/j/result", "no-such-branch")


def test_merge_makes_a_no_ff_merge_commit(job: tuple[Repo, Path], tmp_path: Path, git: Git) -> None:
    r, job_wt = job
    base = r.head(job_wt)
    r.add_worktree(tmp_path / "a", "item-a", "mapwise/j/result")
    item_sha = _commit_change(r, tmp_path / "a", "a.txt")
    assert not r.is_ancestor(item_sha, "mapwise/j/result")
    assert r.unmerged_commits("item-a", "mapwise/j/result") == 1
    # When merged (a fast-forward would be possible: --no-ff makes a merge commit anyway)
    new_head = r.merge(job_wt, "item-a", "mapwise: merge item a")
    # Then
    parents = git(job_wt, "rev-list", "--parents", "-n", "1", new_head).split()
    assert parents == [new_head, base, item_sha]
    assert git(job_wt, "log", "-1", "--format=%s", new_head).strip() == "mapwise: merge item a"
    assert r.rev_parse("mapwise/j/result") == new_head
    assert (job_wt / "a.txt").exists()
    assert r.is_ancestor(item_sha, "mapwise/j/result")
    assert r.unmerged_commits("item-a", "mapwise/j/result") == 0
    assert not r.is_dirty(job_wt)


def test_a_failed_merge_leaves_no_merge_behind(
    job: tuple[Repo, Path], tmp_path: Path
) -> None:
    r, job_wt = job
    r.add_worktree(tmp_path / "a", "item-a", "mapwise/j/result")
    (tmp_path / "a" / "README.md").write_text("from a\n")
    r.commit_all(tmp_path / "a", "a")
    (job_wt / "README.md").write_text("from job\n")
    before = r.commit_all(job_wt, "job")
    with pytest.raises(GitError, match="CONFLICT"):
        r.merge(job_wt, "item-a", "m")
    assert r.head(job_wt) == before
    assert not r.is_dirty(job_wt)
    assert not (r.common_dir / "worktrees" / "job wt" / "MERGE_HEAD").exists()


def test_abort_leftover_merge_after_a_real_conflicting_merge(
    job: tuple[Repo, Path], tmp_path: Path, git: Git
) -> None:
    r, job_wt = job
    r.add_worktree(tmp_path / "a", "item-a", "mapwise/j/result")
    (tmp_path / "a" / "README.md").write_text("from a\n")
    r.commit_all(tmp_path / "a", "a")
    (job_wt / "README.md").write_text("from job\n")
    before = r.commit_all(job_wt, "job")
    # Given a merge stopped midway, as a killed one would leave it
    git(job_wt, "merge", "--no-ff", "item-a", check=False)
    merge_head = Path(git(job_wt, "rev-parse", "--git-path", "MERGE_HEAD").strip())
    assert (job_wt / merge_head).exists()
    # When
    assert r.abort_leftover_merge(job_wt) is True
    # Then
    assert not (job_wt / merge_head).exists()
    assert r.head(job_wt) == before
    assert not r.is_dirty(job_wt)
    assert r.abort_leftover_merge(job_wt) is False


def test_abort_leftover_merge_removes_a_stale_index_lock(job: tuple[Repo, Path], git: Git) -> None:
    r, job_wt = job
    lock = job_wt / git(job_wt, "rev-parse", "--git-path", "index.lock").strip()
    lock.write_text("")
    old = time.time() - 60
    os.utime(lock, (old, old))
    assert r.abort_leftover_merge(job_wt) is True
    assert not lock.exists()


def test_abort_leftover_merge_keeps_a_fresh_index_lock(job: tuple[Repo, Path], git: Git) -> None:
    r, job_wt = job
    lock = job_wt / git(job_wt, "rev-parse", "--git-path", "index.lock").strip()
    lock.write_text("")
    assert r.abort_leftover_merge(job_wt) is False
    assert lock.exists()


def test_abort_leftover_merge_can_discard_a_half_applied_merge(job: tuple[Repo, Path]) -> None:
    r, job_wt = job
    (job_wt / "README.md").write_text("half merged\n")
    (job_wt / "untracked.txt").write_text("kept\n")
    assert r.abort_leftover_merge(job_wt) is False  # changes are kept unless asked
    assert r.abort_leftover_merge(job_wt, discard_changes=True) is True
    assert (job_wt / "README.md").read_text() == "# demo\nline two\n"
    assert (job_wt / "untracked.txt").exists()


def test_delete_branch(job: tuple[Repo, Path], tmp_path: Path) -> None:
    r, _ = job
    r.add_worktree(tmp_path / "a", "item-a", "HEAD")
    _commit_change(r, tmp_path / "a", "a.txt")
    r.remove_worktree(tmp_path / "a")
    with pytest.raises(GitError, match="not fully merged"):
        r.delete_branch("item-a")
    assert r.branch_exists("item-a")
    r.delete_branch("item-a", force=True)
    assert not r.branch_exists("item-a")


# -- the write lock ---------------------------------------------------------------------

_HOLD_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
flags = fcntl.LOCK_EX | (fcntl.LOCK_NB if sys.argv[2] == "try" else 0)
try:
    fcntl.flock(fd, flags)
except BlockingIOError:
    sys.exit(1)
print("locked", flush=True)
if sys.argv[2] == "hold":
    sys.stdin.readline()
"""


def _flock_probe(lock: Path) -> int:
    args = [sys.executable, "-c", _HOLD_FLOCK, str(lock), "try"]
    return subprocess.run(args, capture_output=True, check=False).returncode


def test_write_lock_excludes_another_process(repo: Path) -> None:
    r = Repo(repo)
    lock = r.common_dir / "mapwise.lock"
    with r.write_lock():
        assert _flock_probe(lock) == 1
        with r.write_lock():  # re-entrant in this thread
            assert _flock_probe(lock) == 1
        assert _flock_probe(lock) == 1  # still held by the outer holder
    assert _flock_probe(lock) == 0


def test_write_lock_waits_for_another_process(repo: Path) -> None:
    r = Repo(repo)
    lock = r.common_dir / "mapwise.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_FLOCK, str(lock), "hold"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "locked"
        acquired = threading.Event()

        def take() -> None:
            with r.write_lock():
                acquired.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not acquired.wait(0.3)  # blocked while the other process holds it
        holder.stdin.write("release\n")
        holder.stdin.flush()
        taker.join(timeout=10)
        assert acquired.is_set()
    finally:
        holder.kill()
        holder.wait()


def test_write_lock_is_shared_by_repo_objects_of_one_repository(repo: Path) -> None:
    first, second = Repo(repo), Repo(repo / "src")
    acquired = threading.Event()

    def take() -> None:
        with second.write_lock():
            acquired.set()

    with first.write_lock():
        taker = threading.Thread(target=take)
        taker.start()
        assert not acquired.wait(0.3)
    taker.join(timeout=10)
    assert acquired.is_set()
