"""Process groups a run leaves behind, noted per slot, and killing them later.

A pool slot (or the coordinator, for setup and reduce) notes the process group it runs
in ``slots/<name>.json``. If the coordinator dies (``kill -9``), its commands live on;
before a resume re-runs those attempts it kills what still lives of their groups, so the
same item never runs twice at once. A second Ctrl-C uses the same notes to stop at once.

A note carries the boot id and the clock tick it was written at, so a group id that the
kernel has since given to an unrelated process is never killed: the leader is alive (or
an unreaped zombie) when its note is written, so its pid can be given out again only
later, and a process holding that pid which started after the note is a stranger.

Notes are written once per item, so the pool's notes are files opened once per slot and
rewritten in place (`SlotNoteBoard`): one system call to note, one to clear.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@functools.cache
def boot_id() -> str:
    """This boot's id; it cannot change while we run, so it is read once."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/pid/stat)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


@dataclass(frozen=True)
class SlotNote:
    """What one slot was running when last noted."""

    slot: str
    pgid: int
    host: str
    boot_id: str
    leader_start: int | None
    attempt_id: int | None
    item_index: int | None
    since: float
    noted_at_tick: int | None = None  # clock ticks since boot when noted (reuse check)

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def write_note(folder: Path, note: SlotNote) -> None:
    """Write a slot's note (0600) in one ``write``: it must survive us, not a crash of the
    machine, which ends the commands as well.

    This runs once per item, so it costs three system calls and no rename: a ``kill -9``
    between the truncation and the write leaves an empty note, which readers skip, and
    the resume's scan for the job's environment variable still finds the group.
    """
    data = note.to_json().encode()
    path = f"{folder}/{note.slot}.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except FileNotFoundError:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _boot_tick() -> int:
    """Now, in the unit and clock of a process's start time in /proc/<pid>/stat."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLOCK_TICKS)


def make_note(
    slot: str, pgid: int, *, attempt_id: int | None = None, item_index: int | None = None
) -> SlotNote:
    """A note for a group whose leader is alive or unreaped (its pid not yet reusable)."""
    return SlotNote(
        slot=slot,
        pgid=pgid,
        host=_hostname(),
        boot_id=boot_id(),
        leader_start=None,
        attempt_id=attempt_id,
        item_index=item_index,
        since=time.time(),
        noted_at_tick=_boot_tick(),
    )


_NOTE_BYTES = 1024  # notes are padded to this size, so a shorter one overwrites a longer


class SlotNoteBoard:
    """The notes of one pool's slots: one file per slot, opened once, rewritten in place.

    A slot runs one attempt at a time, so no two threads write the same file at once.
    Clearing truncates the file; readers skip an empty note.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def _fd(self, slot: str) -> int:
        fd = self._fds.get(slot)
        if fd is None:
            with self._lock:
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(f"{self.folder}/{slot}.json", os.O_RDWR | os.O_CREAT, 0o600)
                self._fds[slot] = fd
        return fd

    def write(self, note: SlotNote) -> None:
        data = note.to_json().encode()
        fd = self._fd(note.slot)
        os.pwrite(fd, data.ljust(_NOTE_BYTES), 0)
        if len(data) > _NOTE_BYTES:
            os.ftruncate(fd, len(data))

    def clear(self, slot: str) -> None:
        fd = self._fds.get(slot)
        if fd is not None:
            os.ftruncate(fd, 0)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def clear_note(folder: Path, slot: str) -> None:
    """Empty a slot's note (truncated, not removed: a `SlotNoteBoard` may hold it open)."""
    with contextlib.suppress(FileNotFoundError):
        os.truncate(f"{folder}/{slot}.json", 0)


def read_notes(folder: Path) -> list[SlotNote]:
    notes: list[SlotNote] = []
    if not folder.is_dir():
        return notes
    for path in sorted(folder.glob("*.json")):
        try:
            text = path.read_text().strip()
            if text:  # an empty note is a cleared one
                notes.append(SlotNote(**json.loads(text)))
        except (OSError, ValueError, TypeError):
            continue
    return notes


def _members(note: SlotNote) -> list[int]:
    """Live processes of the noted group, unless its id now names another group.

    Linux gives out a pid again only once no process group uses it; so if the leader's
    pid runs a process that started after the note was written (or, in notes of older
    versions, at another time than noted), the id was reused and nothing is ours.
    Otherwise every live process in the group is of the group we noted.
    """
    if _pgid_reused(note):
        return []
    members: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if not fields or len(fields) < 20 or fields[0] == "Z":
            continue
        if int(fields[2]) == note.pgid:
            members.append(int(entry))
    return members


def _pgid_reused(note: SlotNote) -> bool:
    leader_start = start_time(note.pgid)
    if leader_start is None:
        return False  # the leader is gone; its group (if any) is still the noted one
    if note.leader_start is not None and leader_start != note.leader_start:
        return True
    return note.noted_at_tick is not None and leader_start > note.noted_at_tick


def live_orphans(note: SlotNote) -> list[int]:
    """The pids still alive of a noted group on this machine and this boot."""
    if note.host != socket.gethostname() or note.boot_id != boot_id():
        return []
    return _members(note)


def kill_orphans(folder: Path, *, sig: int = signal.SIGKILL) -> list[SlotNote]:
    """Kill what lives of every noted group; return the notes whose groups were alive."""
    killed: list[SlotNote] = []
    for note in read_notes(folder):
        pids = live_orphans(note)
        if pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(note.pgid, sig)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            killed.append(note)
        clear_note(folder, note.slot)
    return killed


def job_processes(job_id: str) -> list[int]:
    """Live processes on this machine whose environment names ``job_id``.

    Every command of a job gets ``MAPWISE_JOB_ID``; scanning for it finds commands that
    a slot note missed (a coordinator killed between spawning a command and noting its
    group). This process and its ancestors are never included.
    """
    return processes_with_env("MAPWISE_JOB_ID", job_id)


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes (not this one nor its ancestors) whose environment has NAME=VALUE."""
    needle = f"{name}={value}".encode() + b"\0"
    ours = _ancestors(os.getpid())
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if (environ.startswith(needle) or b"\0" + needle in environ) and _alive(int(entry)):
            found.append(int(entry))
    return found


def kill_processes_with_env(name: str, value: str) -> list[int]:
    """SIGKILL the processes ``processes_with_env`` finds."""
    pids = processes_with_env(name, value)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] != "Z"


def _ancestors(pid: int) -> set[int]:
    chain = {pid}
    while pid > 1:
        fields = _stat_fields(pid)
        if not fields:
            break
        pid = int(fields[1])
        chain.add(pid)
    return chain


def kill_job_processes(job_id: str) -> list[int]:
    """SIGKILL every live process of the job's commands left from a dead run."""
    return kill_processes_with_env("MAPWISE_JOB_ID", job_id)
