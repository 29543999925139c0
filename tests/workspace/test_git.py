"""The git layer of worktree mode, on real repositories: running git, worktrees, the lock.

Commits and merges are in ``test_git_merge.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from mapwise.errors import GitError, WorkspaceError
from mapwise.workspace import command
from mapwise.workspace.git import GIT_OPTIONS, MIN_VERSION, Repo, git_version, run_git

Git = Callable[..., str]  # the `git` fixture: git(cwd, *args) -> stdout


def commit_change(r: Repo, wt: Path, name: str, text: str = "x\n") -> str:
    (wt / name).write_text(text)
    sha = r.commit_all(wt, f"change {name}")
    assert sha is not None
    return sha


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
    with pytest.raises(GitError, match=r"index\.lock': File exists"):
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


def test_add_worktree_force_creates_an_existing_branch(
    repo: Path, tmp_path: Path, git: Git
) -> None:
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
    commit_sha = commit_change(r, wt, "work.txt")
    # Given the folder vanished (its record remains)
    shutil.rmtree(wt)
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
    shutil.rmtree(wt)
    assert wt.resolve() in r.worktree_paths()
    r.remove_worktree(wt)
    assert wt.resolve() not in r.worktree_paths()


def test_prune_worktrees_forgets_records_of_lost_folders(repo: Path, tmp_path: Path) -> None:
    r = Repo(repo)
    kept, lost = tmp_path / "kept", tmp_path / "lost"
    r.add_worktree(kept, "a", "HEAD")
    r.add_worktree(lost, "b", "HEAD")
    shutil.rmtree(lost)
    r.prune_worktrees()
    assert set(r.worktree_paths()) == {repo.resolve(), kept.resolve()}


def test_worktree_paths_shows_a_detached_head_as_none(repo: Path, tmp_path: Path, git: Git) -> None:
    git(repo, "worktree", "add", "--quiet", "--detach", str(tmp_path / "det"), "HEAD")
    assert Repo(repo).worktree_paths()[(tmp_path / "det").resolve()] is None


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
