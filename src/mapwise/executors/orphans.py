"""Process groups a run leaves behind, noted per slot, and killing them later.

A pool slot (or the coordinator, for setup and reduce) notes the process group it runs
in ``slots/<name>.json``. If the coordinator dies (``kill -9``), its commands live on;
before a resume re-runs those attempts it kills what still lives of their groups, so the
same item never runs twice at once. A second Ctrl-C uses the same notes to stop at once.

A note carries the boot id and the clock tick it was written at, so a group id that the
kernel has since given to an unrelated process is never killed: the leader is alive (or
an unreaped zombie) when its note is written, so its pid can be given out again only
later, and a process holding that pid which started after the note is a stranger.

Every note reaches its file through :func:`_put_note`, in one ``pwrite`` of a padded
record. The pool notes once per item, so its files are opened once per slot and
rewritten in place (:class:`SlotNoteBoard`, one per slots folder: :func:`slot_board`);
the coordinator, which notes a few times per job, opens its file for each note
(:func:`write_note`). What /proc says about processes comes from
``mapwise.executors.procgroups``.
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

from mapwise.executors.procgroups import (
    boot_id,
    boot_tick,
    group_members,
    kill_pids,
    processes_with_env,
    start_time,
)

JOB_VARIABLE = "MAPWISE_JOB_ID"  # every command of a job has it in its environment
# ... and its job's folder: two state directories may each hold a job of the same id
JOB_DIR_VARIABLE = "MAPWISE_JOB_DIR"
_NOTE_BYTES = 1024  # notes are padded to this size, so a shorter one overwrites a longer
_BLANK_NOTE = b" " * _NOTE_BYTES  # a cleared note: only the padding


@functools.cache
def _hostname() -> str:
    return socket.gethostname()


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
        noted_at_tick=boot_tick(),
    )


def _put_note(fd: int, note: SlotNote) -> None:
    """Write ``note`` over whatever the open note file ``fd`` held: the one note writer.

    One ``pwrite`` of the JSON padded with spaces to ``_NOTE_BYTES``, so a shorter note
    covers a longer one without a truncation (readers strip the padding). It must
    survive us, not a crash of the machine (which ends the commands as well): no fsync.
    """
    data = note.to_json().encode()
    os.pwrite(fd, data.ljust(_NOTE_BYTES), 0)
    if len(data) > _NOTE_BYTES:  # a note too long for the padding: the file grew
        os.ftruncate(fd, len(data))


def _open_note(folder: Path, slot: str, flags: int) -> int:
    """Open ``slot``'s note file (0600), creating a 0700 ``folder`` the first time."""
    path = f"{folder}/{slot}.json"
    try:
        return os.open(path, flags | os.O_CREAT, 0o600)
    except FileNotFoundError:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(path, flags | os.O_CREAT, 0o600)


def write_note(folder: Path, note: SlotNote) -> None:
    """Write a slot's note in a file opened for this one note (see :class:`SlotNoteBoard`).

    A ``kill -9`` between the truncation and the write leaves an empty note, which
    readers skip; the resume's scan for the job's environment variable still finds the
    group.
    """
    fd = _open_note(folder, note.slot, os.O_WRONLY | os.O_TRUNC)
    try:
        _put_note(fd, note)
    finally:
        os.close(fd)


class SlotNoteBoard:
    """The notes of one pool's slots: one file per slot, opened once, rewritten in place.

    A slot runs one attempt at a time, so no two threads write the same file at once.
    Clearing overwrites the note with its padding, so the file keeps its size: a size
    change is a metadata change, which the filesystem journals, and on ext4 every journal
    commit is waited for by the next fsync of the job's database (B2 of issue 15: 2 to 3 %
    of a run of short items). Readers skip a note that is only padding.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def _fd(self, slot: str) -> int:
        fd = self._fds.get(slot)
        if fd is None:
            with self._lock:
                fd = self._fds.get(slot)
                if fd is None:
                    fd = self._fds[slot] = _open_note(self.folder, slot, os.O_RDWR)
        return fd

    def write(self, note: SlotNote) -> None:
        _put_note(self._fd(note.slot), note)

    def clear(self, slot: str) -> None:
        fd = self._fds.get(slot)
        if fd is not None:
            os.pwrite(fd, _BLANK_NOTE, 0)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


_boards: dict[Path, SlotNoteBoard] = {}
_boards_lock = threading.Lock()


def slot_board(folder: Path) -> SlotNoteBoard:
    """The note board of a slots folder, shared by every attempt of this process."""
    board = _boards.get(folder)
    if board is None:
        with _boards_lock:
            board = _boards.setdefault(folder, SlotNoteBoard(folder))
    return board


def close_slot_notes(folder: Path) -> None:
    """Close the note files of ``folder``'s slots (at the end of a map phase)."""
    with _boards_lock:
        board = _boards.pop(folder, None)
    if board is not None:
        board.close()


def clear_note(folder: Path, slot: str) -> None:
    """Empty a slot's note (truncated, not removed: a `SlotNoteBoard` may hold it open)."""
    with contextlib.suppress(FileNotFoundError):
        os.truncate(f"{folder}/{slot}.json", 0)


def read_notes(folder: Path) -> list[SlotNote]:
    """The notes in ``folder`` that hold a note (empty and unreadable ones are skipped)."""
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


def _pgid_reused(note: SlotNote) -> bool:
    """Whether the noted group id now names another group.

    Linux gives out a pid again only once no process group uses it; so if the leader's
    pid runs a process that started after the note was written (or, in notes of older
    versions, at another time than noted), the id was reused and nothing is ours.
    Otherwise every live process in the group is of the group we noted.
    """
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
    return [] if _pgid_reused(note) else group_members(note.pgid)


def kill_orphans(folder: Path, *, sig: int = signal.SIGKILL) -> list[SlotNote]:
    """Kill what lives of every noted group; return the notes whose groups were alive."""
    killed: list[SlotNote] = []
    for note in read_notes(folder):
        pids = live_orphans(note)
        if pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(note.pgid, sig)
            kill_pids(pids, sig)
            killed.append(note)
        clear_note(folder, note.slot)
    return killed


def job_dir(root: Path) -> str:
    """The ``MAPWISE_JOB_DIR`` of the job whose folder is ``root``: its real path, so that
    a run and a later resume name the folder alike whatever path led to it."""
    return os.path.realpath(root)


def job_processes(job_id: str, folder: str | None = None) -> list[int]:
    """Live processes on this machine whose environment names ``job_id``.

    Every command of a job gets ``MAPWISE_JOB_ID``; scanning for it finds commands that
    a slot note missed (a coordinator killed between spawning a command and noting its
    group). With ``folder`` (the job's ``MAPWISE_JOB_DIR``), a command of another job of
    the same id, in another state directory, is left alone; one without the variable
    (started by a mapwise before it existed) is taken as this job's. This process and
    its ancestors are never included.
    """
    other = None if folder is None else (JOB_DIR_VARIABLE, folder)
    return processes_with_env(JOB_VARIABLE, job_id, unless_other=other)


def kill_processes_with_env(name: str, value: str) -> list[int]:
    """SIGKILL the processes ``processes_with_env`` finds; return their pids."""
    pids = processes_with_env(name, value)
    kill_pids(pids)
    return pids


def kill_job_processes(job_id: str, folder: str | None = None) -> list[int]:
    """SIGKILL every live process of the job's commands left from a dead run (those of
    ``job_processes``); return their pids."""
    pids = job_processes(job_id, folder)
    kill_pids(pids)
    return pids
