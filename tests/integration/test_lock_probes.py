"""A listing's probe of a job's lock never makes a runner think the job is held.

``is_locked`` (run by every ``jobs`` and ``status``) takes a shared ``flock`` for an
instant; a ``run`` or ``resume`` asking for the exclusive lock at that instant was refused
with exit 3, "held by another process", although no runner held the job.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mapwise.errors import JobLockedError
from mapwise.store.lock import JobLock, is_locked


def test_a_runner_is_never_refused_because_a_listing_probes_the_lock(tmp_path: Path) -> None:
    # Given a process that probes the job's lock over and over, as listings do
    lock = tmp_path / "lock"
    lock.touch()
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            is_locked(lock)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        # When a runner takes and releases the lock many times meanwhile
        for _ in range(300):
            JobLock(lock).acquire("job").release()
    finally:
        stop.set()
        prober.join()
    # Then it was never refused (the loop above would have raised JobLockedError)


def test_a_runner_is_refused_while_another_runner_holds_the_job(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    with JobLock(lock).acquire("job"):
        assert is_locked(lock)
        with pytest.raises(JobLockedError, match="held by pid"):
            JobLock(lock).acquire("job")
    assert not is_locked(lock)
