"""One runner per job: an exclusive ``flock`` on the job's lock file.

The OS releases the lock when its process dies, even under ``kill -9``, so a stale lock
file never blocks a resume. The holder writes its pid, host and start time into the file
so that a refused second runner can say who holds the job.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from mapwise.errors import JobLockedError
from mapwise.store.paths import unwritable


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a job's lock."""

    pid: int
    host: str
    since: float

    def describe(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
        return f"pid {self.pid} on {self.host} since {stamp}"


def read_holder(path: Path) -> LockHolder | None:
    """The holder recorded in a lock file, or None if it is empty or unreadable."""
    try:
        data = json.loads(path.read_text())
        return LockHolder(int(data["pid"]), str(data["host"]), float(data["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


HOLDER_WAIT = 1.0  # seconds a refused runner waits for a new holder to write its name
# seconds a runner keeps trying for the lock: a reader's probe (``is_locked``, run by every
# listing) holds a shared lock for an instant, and must not look like a live runner
PROBE_WAIT = 0.25


def _alive_here(holder: LockHolder) -> bool:
    """Whether a holder on this host is a live process (a holder elsewhere is assumed so)."""
    if holder.host != socket.gethostname():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _current_holder(path: Path) -> LockHolder | None:
    """The live holder of a lock we were refused.

    The winner writes its name just after taking the lock, so the file may still name
    the previous, dead holder for a moment: wait briefly for the live one.
    """
    deadline = time.monotonic() + HOLDER_WAIT
    while True:
        holder = read_holder(path)
        if holder is not None and _alive_here(holder):
            return holder
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _held_error(job_id: str, path: Path) -> JobLockedError:
    holder = _current_holder(path)
    who = holder.describe() if holder else "another process"
    return JobLockedError(f"job {job_id} is held by {who}; wait for it to stop, or stop it first")


def refuse_if_held(path: Path, job_id: str) -> None:
    """Raise ``JobLockedError`` (exit 3) naming the holder if a live process holds the lock.

    For callers that must only say who holds a job, such as a new run refusing an id that
    is taken: unlike ``JobLock.acquire`` it never takes the lock, so it never writes its
    own name into another job's lock file (its probe is the shared lock every listing
    takes for an instant, which ``JobLock.acquire`` waits out).
    """
    if is_locked(path):
        raise _held_error(job_id, path)


class JobLock:
    """An acquired job lock; release it with ``release`` or by leaving the ``with`` block."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, job_id: str) -> JobLock:
        """Take the lock or raise ``JobLockedError`` (exit 3) naming the holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            error = unwritable(exc, self.path)
            if error is None:
                raise
            raise error from exc
        if not _take_exclusive(fd):
            os.close(fd)
            raise _held_error(job_id, self.path)
        holder = LockHolder(os.getpid(), socket.gethostname(), time.time())
        payload = json.dumps({"pid": holder.pid, "host": holder.host, "since": holder.since})
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload.encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JobLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _take_exclusive(fd: int) -> bool:
    """Take the lock, waiting out readers' probes; False while a runner holds it."""
    deadline = time.monotonic() + PROBE_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def is_locked(path: Path) -> bool:
    """Whether a live process holds the lock at ``path`` (tests it without keeping it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
