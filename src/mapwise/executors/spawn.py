"""Starting a command as the leader of a new session: ``posix_spawn`` where it can.

Why this module exists: with short commands the coordinator's cost per item is set by
how it starts them, and ``subprocess.Popen`` spends most of its time in Python (it
encodes every environment variable with ``os.fsencode``, one call each, for every
command; on a machine with 90 variables that was a quarter of a slot thread's CPU, under
the interpreter lock every other thread waits for). ``os.posix_spawn`` does the same in
C: the environment, the pipes (``dup2`` file actions), the new session (``setsid``) and
the signals Python ignores put back to their defaults (``setsigdef``, as Popen's
``restore_signals``).

``posix_spawn`` has no working directory and no ``PATH`` of the child's environment, so
it is used only for an absolute program run in this process's own directory (every
shell step ``/bin/sh -c ...`` of a job run from its workflow's folder); anything else
goes through ``Popen``, exactly as before. Popen's ``close_fds`` has no equivalent
either: file descriptors that Python opens are close-on-exec (PEP 446), SQLite's too,
and the few a host program may have left inheritable are listed once and closed in each
child by file actions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_RESET_SIGNALS = tuple(
    sig for sig in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if sig
)
_FAST = sys.platform == "linux" and hasattr(os, "posix_spawn")


class Child(Protocol):
    """What the caller needs of a started command: its pid, and its reaping."""

    @property
    def pid(self) -> int: ...

    def wait(self) -> int: ...

    def poll(self) -> int | None: ...


@dataclass
class SpawnedChild:
    """A child started by ``posix_spawn``: reaped as Popen reaps (``returncode`` < 0 for a
    signal; 0 when someone else reaped it, as Popen says too)."""

    pid: int
    returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            self._reaped(0)
        return self.returncode if self.returncode is not None else 0

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reaped(os.WNOHANG)
        return self.returncode

    def _reaped(self, flags: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            self.returncode = 0
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)


_inheritable: tuple[int, ...] | None = None


def _inheritable_fds() -> tuple[int, ...]:
    """Descriptors above 2 a child would inherit, listed once (Popen closes them all)."""
    global _inheritable
    if _inheritable is None:
        found = []
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            names = []
        for name in names:
            fd = int(name)
            try:
                if fd > 2 and os.get_inheritable(fd):
                    found.append(fd)
            except OSError:
                continue  # the listing's own descriptor, closed by now
        _inheritable = tuple(found)
    return _inheritable


def _still(fd: int) -> bool:
    """Whether a listed descriptor is still open and inheritable (a close action on a
    closed one could fail the spawn)."""
    try:
        return os.get_inheritable(fd)
    except OSError:
        return False


def _fast_path(argv: Sequence[str], cwd: Path | str | None) -> bool:
    if not _FAST or not os.path.isabs(argv[0]):
        return False
    return cwd is None or os.path.normpath(os.fspath(cwd)) == os.getcwd()


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str | None,
    stdin: int,
    stdout: int,
    stderr: int,
) -> Child:
    """Start ``argv`` leading a new session, its standard streams on the given fds.

    Raises ``OSError`` (the program is missing or not executable, as Popen does) or
    ``ValueError`` for an environment that cannot be passed.
    """
    global _FAST
    if _fast_path(argv, cwd):
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
        ]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds() if _still(fd)]
        try:
            pid = os.posix_spawn(
                argv[0],
                list(argv),
                env,
                file_actions=actions,
                setsid=True,
                setsigdef=_RESET_SIGNALS,
            )
        except NotImplementedError:  # a C library without POSIX_SPAWN_SETSID
            _FAST = False
        else:
            return SpawnedChild(pid)
    return subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )
