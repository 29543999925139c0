"""What a ``sqlite3`` error means for the job, decided by SQLite's result code.

SQLite says why a call failed in its result code (``exc.sqlite_errorcode``, whose low
byte is the primary code); the message is prose for people and changes between
versions, so nothing here reads it. Each code becomes the ``MapwiseError`` that tells the
user what to do next, and only codes that mean the file's content is wrong say "damaged":

=============================================  ==================  ====
SQLite result code                             error               exit
=============================================  ==================  ====
BUSY, LOCKED, PROTOCOL (a lock kept failing)   StateBusyError      3
FULL                                           StorageFullError    1
READONLY, PERM                                 StateReadOnlyError  1
CANTOPEN, IOERR: read-only file system or      StateReadOnlyError  1
no write permission on the files
IOERR on a file system with no free space      StorageFullError    1
CANTOPEN, IOERR otherwise                      StorageError        1
CORRUPT, NOTADB, FORMAT, ERROR, SCHEMA,        StateDamagedError   4
MISMATCH, TOOBIG, CONSTRAINT, EMPTY, text
that is not UTF-8
MISUSE, RANGE, an error of the sqlite3         (re-raised as is)   --
module itself (ProgrammingError, ...)
anything else (INTERNAL, ABORT, NOLFS, ...)    StorageError        1
=============================================  ==================  ====

``CANTOPEN`` and ``IOERR`` hide the ``errno`` behind them (Python does not expose it), so
for those the file system is asked directly: read-only, not writable by this user, or
out of space. An I/O error with none of those causes is not called damage: a failing disk
or a file changed under the process may have left the state whole, and ``verify`` tells.

``SQLITE_ERROR`` is damage because mapwise's own statements are tested against its own
schema: "no such table" or "no such column" at run time means the file is not what
mapwise wrote. Misuse of the ``sqlite3`` API is a bug in mapwise and stays a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mapwise.errors import (
    MapwiseError,
    StateBusyError,
    StateDamagedError,
    StateReadOnlyError,
    StorageError,
    StorageFullError,
)

# primary result codes (https://sqlite.org/rescode.html)
SQLITE_ERROR = 1
SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_PROTOCOL = 15
SQLITE_EMPTY = 16
SQLITE_SCHEMA = 17
SQLITE_TOOBIG = 18
SQLITE_CONSTRAINT = 19
SQLITE_MISMATCH = 20
SQLITE_MISUSE = 21
SQLITE_FORMAT = 24
SQLITE_RANGE = 25
SQLITE_NOTADB = 26
SQLITE_READONLY_DBMOVED = SQLITE_READONLY | (4 << 8)  # the file was moved or deleted

BUSY = frozenset({SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL})
READ_ONLY = frozenset({SQLITE_READONLY, SQLITE_PERM})
PROBED = frozenset({SQLITE_CANTOPEN, SQLITE_IOERR})
DAMAGE = frozenset(
    {
        SQLITE_ERROR,
        SQLITE_CORRUPT,
        SQLITE_EMPTY,
        SQLITE_SCHEMA,
        SQLITE_TOOBIG,
        SQLITE_CONSTRAINT,
        SQLITE_MISMATCH,
        SQLITE_FORMAT,
        SQLITE_NOTADB,
    }
)
BUGS = frozenset({SQLITE_MISUSE, SQLITE_RANGE})

REPAIR_HINT = "run `mapwise verify JOB` and `mapwise repair JOB`"


def _not_writable(path: Path) -> str | None:
    """Why ``path``'s folder or files cannot be written by this process, if they cannot."""
    folder = path.parent
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "the file system is read-only"
    wal, shm = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    for target in (folder, path, wal, shm):
        if target.exists() and not os.access(target, os.W_OK):
            return f"{target} is not writable by this user"
    return None


def _out_of_space(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return os.statvfs(path.parent).f_bavail == 0
    return False


def _full(exc: BaseException) -> StorageFullError:
    return StorageFullError(
        f"no room to write the job's state ({exc}); free some space, then resume the job"
    )


def _read_only(where: str, why: str, exc: BaseException) -> StateReadOnlyError:
    return StateReadOnlyError(
        f"the job's database{where} cannot be written: {why} ({exc}); SQLite writes beside "
        "it even to read (its -wal and -shm files). This is not damage: make the state "
        "directory and its files writable by this user, then try again"
    )


def classify(exc: BaseException, path: Path | None = None) -> MapwiseError | None:
    """The ``MapwiseError`` that ``exc`` from SQLite means, or None for a bug in mapwise.

    ``path`` is the database file, for the message and for the file system checks that
    ``CANTOPEN`` and ``IOERR`` need; without it those become a plain ``StorageError``.
    """
    where = f" {path}" if path is not None else ""
    if isinstance(exc, UnicodeDecodeError):
        return StateDamagedError(
            f"the job's database{where} holds text that is not UTF-8 ({exc}); {REPAIR_HINT}"
        )
    if not isinstance(exc, sqlite3.Error):
        return None
    code: int | None = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None) or "no SQLite code"
    if code is None:
        # raised by the sqlite3 module itself: text it cannot decode is an
        # OperationalError; the rest (a closed connection, wrong bindings) are bugs
        if type(exc) is sqlite3.OperationalError:
            return StateDamagedError(f"the job's database{where} is damaged ({exc}); {REPAIR_HINT}")
        return None
    primary = code & 0xFF
    if primary in BUGS:
        return None
    if primary in BUSY:
        return StateBusyError(
            f"the job's database{where} stayed locked by another process past the busy "
            f"timeout ({exc}, {name}); the state is sound: wait for that process to finish "
            "(or stop it), then try again"
        )
    if primary == SQLITE_FULL:
        return _full(exc)
    if primary in READ_ONLY and code != SQLITE_READONLY_DBMOVED:
        why = _not_writable(path) if path is not None else None
        return _read_only(where, why or "the connection is read-only", exc)
    if primary in PROBED and path is not None:
        why = _not_writable(path)
        if why is not None:
            return _read_only(where, why, exc)
        if primary == SQLITE_IOERR and _out_of_space(path):
            return _full(exc)
    if primary in DAMAGE:
        return StateDamagedError(
            f"the job's database{where} is damaged ({exc}, {name}); {REPAIR_HINT}"
        )
    return StorageError(
        f"the job's database{where} could not be read or written ({exc}, {name}); nothing "
        "shows that the state is damaged: check the disk and the file, then try again"
    )


def _database_of(conn: sqlite3.Connection) -> Path | None:
    """The file behind ``conn``'s main database (no lock needed), or None if unknown."""
    with contextlib.suppress(sqlite3.Error):
        for _, schema_name, file in conn.execute("PRAGMA database_list").fetchall():
            if schema_name == "main" and file:
                return Path(file)
    return None


@contextmanager
def translated(where: Path | sqlite3.Connection | None = None) -> Iterator[None]:
    """Raise what an escaping SQLite error means (``classify``) instead of the error.

    ``where`` is the database's path, or a connection to find it from (only when an
    error needs it). The SQLite error stays attached as ``__cause__``.
    """
    try:
        yield
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        path = _database_of(where) if isinstance(where, sqlite3.Connection) else where
        error = classify(exc, path)
        if error is None:
            raise
        raise error from exc
