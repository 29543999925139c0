"""Process groups a run leaves behind, noted per slot, and killing them later.

A pool slot (or the coordinator, for setup and reduce) notes the process group it runs
in ``slots/<name>.json``. If the coordinator dies (``kill -9``), its commands live on;
before a resume re-runs those attempts it kills what still lives of their groups, so the
same item never runs twice at once. A second Ctrl-C uses the same notes to stop at once.

A note carries the boot id and the group leader's start time, so a group id that the
kernel has since given to an unrelated process is never killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
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

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def write_note(folder: Path, note: SlotNote) -> None:
    """Write a slot's note (0600); a plain write is enough: it must survive us, not a crash
    of the machine, which ends the commands as well."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{note.slot}.json"
    tmp = folder / f".{note.slot}.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(note.to_json())
    os.replace(tmp, path)  # a reader sees the old note or the new one, never half


def make_note(
    slot: str, pgid: int, *, attempt_id: int | None = None, item_index: int | None = None
) -> SlotNote:
    return SlotNote(
        slot=slot,
        pgid=pgid,
        host=socket.gethostname(),
        boot_id=boot_id(),
        leader_start=start_time(pgid),
        attempt_id=attempt_id,
        item_index=item_index,
        since=time.time(),
    )


def clear_note(folder: Path, slot: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / f"{slot}.json").unlink()


def read_notes(folder: Path) -> list[SlotNote]:
    notes: list[SlotNote] = []
    if not folder.is_dir():
        return notes
    for path in sorted(folder.glob("*.json")):
        try:
            notes.append(SlotNote(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return notes


def _members(note: SlotNote) -> list[int]:
    """Live processes of the noted group, unless its id now names another group.

    Linux gives out a pid again only once no process group uses it; so if the leader's
    pid runs a process with another start time, the id was reused and nothing is ours.
    Otherwise every live process in the group is of the group we noted.
    """
    leader_start = start_time(note.pgid)
    reused = leader_start is not None and note.leader_start is not None
    if reused and leader_start != note.leader_start:
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
