"""Processes and process groups as the kernel shows them: /proc, liveness, group killing.

Every question mapwise asks about a process that is not its direct child (is it alive,
which group is it in, when did it start, what is in its environment) is answered here,
from ``/proc/<pid>/stat`` and ``/proc/<pid>/environ``, so that one parser decides what
"alive" means everywhere: a zombie is dead (it runs nothing, whoever has to reap it),
and a process that vanished while being read is simply not there.

Signalling a group refuses pgid 0 and 1 (``killpg`` reads them as "my own group" and
"everyone") and the caller's own group, which a recorded pgid may have come to name.
Without /proc (not Linux) the questions fall back to ``kill(pid, 0)``, which cannot tell
a zombie from a live process but never calls a live one dead.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ProcStat",
    "ancestors",
    "boot_id",
    "boot_tick",
    "check_pgid",
    "group_members",
    "kill_pids",
    "kill_process_group",
    "live_members",
    "pid_alive",
    "process_group_alive",
    "processes_with_env",
    "read_stat",
    "signal_group",
    "start_time",
]

log = logging.getLogger(__name__)

_PROC = "/proc"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_DEAD_STATES = frozenset({"Z", "X"})  # zombie, dead: they run no more code
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_KILL_POLL = 0.05  # seconds between liveness checks while a TERMed group has its grace


@functools.cache
def boot_id() -> str:
    """This boot's id ("" without /proc); it cannot change while we run, so it is read once."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def boot_tick() -> int:
    """Now, in the unit and clock of :attr:`ProcStat.start_time` (ticks since boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLOCK_TICKS)


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` that mapwise uses."""

    pid: int
    state: str  # "R", "S", "D", "Z", ...
    ppid: int
    pgrp: int
    start_time: int | None  # clock ticks since boot (field 22), None if the line is short

    @property
    def alive(self) -> bool:
        """Whether the process can still run code (a zombie cannot)."""
        return self.state not in _DEAD_STATES


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat`` parsed, or None if the process is gone or the line unreadable.

    Plain ``os.open``/``os.read``: this runs once per process in a scan of /proc.
    """
    try:
        fd = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # the command name, in parentheses, may hold spaces and ")": split after the last one
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 3:
        return None
    try:
        started = int(fields[19]) if len(fields) > 19 else None
        return ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), started)
    except ValueError:
        return None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    stat = read_stat(pid)
    return None if stat is None else stat.start_time


def _pids() -> list[int] | None:
    """Every pid in /proc, or None where there is no /proc."""
    try:
        return [int(entry.name) for entry in os.scandir(_PROC) if entry.name.isdigit()]
    except OSError:
        return None


@functools.cache
def _have_proc() -> bool:
    """Whether this system has a /proc to read (mounted once, before we start)."""
    return os.path.isdir(f"{_PROC}/self")


def _signal_zero(pid: int) -> bool:
    """``kill(pid, 0)``: whether ``pid`` exists, where /proc cannot say."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but not ours to signal
    return True


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs: gone and zombie processes are dead."""
    stat = read_stat(pid)
    if stat is not None:
        return stat.alive
    return not _have_proc() and _signal_zero(pid)


def ancestors(pid: int) -> set[int]:
    """``pid`` and its parents up to PID 1, as far as /proc shows them."""
    chain = {pid}
    while pid > 1:
        stat = read_stat(pid)
        if stat is None or stat.ppid in chain:
            break
        pid = stat.ppid
        chain.add(pid)
    return chain


def _members(pgids: Collection[int]) -> Iterator[int] | None:
    """Live processes whose group is one of ``pgids``, lazily; None without /proc."""
    pids = _pids()
    if pids is None:
        return None
    stats = (read_stat(pid) for pid in pids)
    return (s.pid for s in stats if s is not None and s.alive and s.pgrp in pgids)


def live_members(pgids: Collection[int]) -> list[int]:
    """Live processes whose group is one of ``pgids`` (empty without /proc)."""
    return list(_members(pgids) or ())


def group_members(pgid: int) -> list[int]:
    """Live processes of group ``pgid`` (empty without /proc)."""
    return live_members((pgid,))


def check_pgid(pgid: int) -> None:
    """Refuse the ids that mean "my own group" or "everyone" to killpg."""
    if pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; False if no such group. Never raises for a vanished group."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to send signal %d to process group %d", sig, pgid)
    return True


def process_group_alive(pgid: int) -> bool:
    """True if any process that is not a zombie belongs to group ``pgid``.

    ``killpg(pgid, 0)`` first, which is cheap and settles "no such group"; a group that
    exists may hold only zombies (of a naive PID 1 in a container, or our own unreaped
    child), which /proc tells apart.
    """
    check_pgid(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, but not ours to signal
    members = _members((pgid,))
    return True if members is None else next(members, None) is not None


def kill_process_group(pgid: int, *, grace: float) -> bool:
    """TERM the group, wait up to ``grace`` seconds for it to die, then KILL what is left.

    Returns True if any live (non-zombie) process of the group existed. The caller's own
    group is never signalled (False): a recorded pgid may have been reused by the caller.
    SIGKILL is asynchronous: a killed process can run no more code, but the kernel may
    take a moment to finish its exit after this returns.
    """
    check_pgid(pgid)
    if pgid == os.getpgrp():
        log.warning("not killing process group %d: it is this process's own group", pgid)
        return False
    if not process_group_alive(pgid) or not signal_group(pgid, signal.SIGTERM):
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not process_group_alive(pgid):
            return True
        time.sleep(_KILL_POLL)
    signal_group(pgid, signal.SIGKILL)
    return True


def kill_pids(pids: Collection[int], sig: int = signal.SIGKILL) -> None:
    """Signal each of ``pids``, ignoring the ones that vanished or are not ours."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _holds(environ: bytes, entry: bytes) -> bool:
    """Whether a NUL-separated environment holds ``entry`` (a NUL-terminated prefix)."""
    return environ.startswith(entry) or b"\0" + entry in environ


def _environ_matches(pid: int, needle: bytes, other: tuple[bytes, bytes] | None) -> bool:
    """Whether ``/proc/<pid>/environ`` holds ``needle`` (``NAME=VALUE\\0``) and, with
    ``other`` (``NAME2=``, ``NAME2=VALUE2\\0``), either that entry or no NAME2 at all."""
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as handle:
            environ = handle.read()
    except OSError:
        return False
    if not _holds(environ, needle):
        return False
    if other is None:
        return True
    name, entry = other
    return _holds(environ, entry) or not _holds(environ, name)


def processes_with_env(
    name: str, value: str, *, unless_other: tuple[str, str] | None = None
) -> list[int]:
    """Live processes (not this one nor its ancestors) whose environment has NAME=VALUE.

    The environment is the one a process started with: a command cannot hide from this
    by leaving its process group (``setsid``), which is why a job's leftovers are found
    this way as well as by their groups. With ``unless_other=(NAME2, VALUE2)``, a process
    whose NAME2 is set to anything but VALUE2 is left out (one without NAME2 is not).
    """
    needle = f"{name}={value}".encode() + b"\0"
    other = None
    if unless_other is not None:
        other = (f"{unless_other[0]}=".encode(), f"{unless_other[0]}={unless_other[1]}\0".encode())
    ours = ancestors(os.getpid())
    return [
        pid
        for pid in _pids() or ()
        if pid not in ours and _environ_matches(pid, needle, other) and pid_alive(pid)
    ]


def _touches(pid: int, folder: str) -> bool:
    """Whether a process works in ``folder``: its working directory, or a path in its
    command line, lies under it."""
    prefix = folder.rstrip("/") + "/"
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    if cwd == folder or cwd.startswith(prefix):
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = handle.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(arg == folder or arg.startswith(prefix) for arg in args)


def processes_in(folder: str, *, command: str) -> list[int]:
    """Live processes named ``command`` (not this one nor its ancestors) that work in
    ``folder``: how a resume finds the git commands a killed coordinator left running in
    its job's worktrees (they outlive it, and would race the new run)."""
    ours = ancestors(os.getpid())
    found = []
    for pid in _pids() or ():
        if pid in ours:
            continue
        try:
            with open(f"/proc/{pid}/comm") as handle:
                name = handle.read().strip()
        except OSError:
            continue
        if name == command and _touches(pid, folder) and pid_alive(pid):
            found.append(pid)
    return found
