"""The write lock of a repository, and the question whether a git is at work in a folder.

One lock per repository serialises what worktrees share (refs, ``packed-refs``, worktree
records, config): a thread lock shared by every ``Repo`` of that repository in this
process, around an ``flock`` on ``<git common dir>/mapwise.lock`` for other processes on
this host (a second mapwise, Dask workers). So mapwise's own git writes never collide, and
the retries of ``run_git`` only ever wait for a git that mapwise did not start.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from mapwise.errors import GitError

__all__ = ["git_process_in", "repo_lock"]


class _RepoLock:
    """The write lock of one repository in this process: a thread lock around a flock.

    The flock is taken once, by the outermost holder, because two ``flock`` calls on two
    descriptors of one file block each other even within one process. Closing the
    descriptor releases it, so a process that dies releases it too.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._rlock:
            if self._depth == 0:
                try:
                    fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                except OSError as error:  # the repository went away under the job
                    raise GitError(
                        f"cannot lock the repository ({self._path}): {error.strerror or error}"
                    ) from error
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)
                    self._fd = None

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's descriptor, which would keep its flock."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._depth = 0
        self._rlock = threading.RLock()


_LOCKS: dict[Path, _RepoLock] = {}
_LOCKS_GUARD = threading.Lock()


def _after_fork_in_child() -> None:
    global _LOCKS_GUARD
    _LOCKS_GUARD = threading.Lock()
    for lock in _LOCKS.values():
        lock.forget_after_fork()
    _LOCKS.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def repo_lock(common_dir: Path) -> AbstractContextManager[None]:
    """Hold the write lock of the repository whose git common dir is ``common_dir``."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(common_dir)
        if lock is None:
            lock = _LOCKS[common_dir] = _RepoLock(common_dir / "mapwise.lock")
        return lock.hold()


def git_process_in(folder: Path) -> bool:
    """Is a git process working in ``folder``? (Linux; elsewhere the lock's age decides.)"""
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("git"):
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        if cwd == folder or folder in cwd.parents:
            return True
    return False
