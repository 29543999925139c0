"""The database check of a resume, started while the program is still starting.

Why: before a resume runs anything it checks the job's database with ``PRAGMA
integrity_check`` (``integrity.quick_verify``; quick_check misses an index that no
longer matches its table). That takes about 0.1 s per 100,000 items, in C, with the
interpreter lock released, and the program spends about 0.2 s importing itself before
it gets there. So ``mapwise resume`` starts the check in a thread as its very first act
(``cli/entry.py``), on a read-only connection, and the check proper takes its result
(``take``) only if the database and its WAL are still exactly the files that were
checked (inode, size, modification time, before and after the check); otherwise it
checks again. Nothing here writes: a read-only connection neither folds nor rewrites
the WAL, so the frame walk that must come before anything changes the WAL
(``walcheck``) still sees it as it was.

This module imports nothing heavy, so starting the check costs the start-up nothing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

_FileState = tuple[tuple[int, int, int] | None, ...]


def _file_state(database: Path) -> _FileState:
    """Inode, size and modification time of the database and its WAL (None: absent, or
    for the WAL empty too: the check proper's own connection makes an empty one, which
    holds nothing)."""
    states: list[tuple[int, int, int] | None] = []
    for path in (database, database.with_name(database.name + "-wal")):
        try:
            st = os.stat(path)
        except OSError:
            states.append(None)
        else:
            empty = st.st_size == 0 and path != database
            states.append(None if empty else (st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(states)


class _Check(threading.Thread):
    """``PRAGMA integrity_check`` of one database, and the files it saw."""

    def __init__(self, database: Path) -> None:
        super().__init__(name="mapwise-precheck", daemon=True)
        self.database = database
        self.rows: list[tuple[object, ...]] | None = None
        self.state: _FileState | None = None

    def run(self) -> None:
        before = _file_state(self.database)
        if before[0] is None:
            return
        try:
            conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
            try:
                rows = conn.execute("PRAGMA integrity_check").fetchall()
            finally:
                conn.close()
        except (sqlite3.Error, UnicodeDecodeError, OSError):
            return  # the check proper will say what it is
        if _file_state(self.database) == before:
            self.rows, self.state = rows, before


_checks: dict[Path, _Check] = {}
_lock = threading.Lock()


def _key(database: Path) -> Path:
    return Path(os.path.abspath(database))


def start(database: Path) -> None:
    """Begin checking ``database`` in the background (once)."""
    database = _key(database)
    with _lock:
        if database in _checks:
            return
        check = _Check(database)
        _checks[database] = check
    check.start()


def take(database: Path) -> list[tuple[object, ...]] | None:
    """The result of ``PRAGMA integrity_check`` of ``database`` from a check started
    earlier, if there was one and the files are still those it checked; else None."""
    with _lock:
        check = _checks.pop(_key(database), None)
    if check is None:
        return None
    check.join()
    if check.rows is None or _file_state(check.database) != check.state:
        return None
    return check.rows
