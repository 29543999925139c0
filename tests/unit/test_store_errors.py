"""SQLite's errors classified at the store's edge by result code, not by message.

Two halves: every result code maps to the right ``MapwiseError`` (errors built by hand,
since SQLite cannot be made to report most codes on demand); and the errors SQLite
really raises (a lock held past the busy timeout, a read-only connection or file system,
a file of garbage, text that is not UTF-8, a full disk at ``COMMIT``) come out of
``db.connect``, ``db.transaction`` and ``db.reading`` as the right class.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mapwise.errors import (
    JobLockedError,
    MapwiseError,
    StateBusyError,
    StateDamagedError,
    StateReadOnlyError,
    StorageError,
    StorageFullError,
)
from mapwise.store import db
from mapwise.store.sqlerrors import classify, translated


def sqlite_error(
    code: int, name: str, kind: type[sqlite3.Error] = sqlite3.OperationalError
) -> sqlite3.Error:
    """An error as SQLite raises it: the codes are plain attributes in Python 3.11."""
    error = kind(f"message of {name}")
    error.sqlite_errorcode = code
    error.sqlite_errorname = name
    return error


@pytest.fixture()
def database(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    conn = db.connect(path, create=True)
    conn.close()
    return path


@pytest.fixture()
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)


@pytest.fixture()
def held(database: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's file lock, readers excluded too.

    In WAL mode ``BEGIN EXCLUSIVE`` alone still lets readers in; with
    ``locking_mode = EXCLUSIVE`` the holder keeps the lock on the file itself.
    """
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    yield holder
    holder.execute("ROLLBACK")
    holder.close()


# -- by result code ----------------------------------------------------------------------

BY_CODE = [
    (5, "SQLITE_BUSY", StateBusyError),
    (517, "SQLITE_BUSY_SNAPSHOT", StateBusyError),
    (6, "SQLITE_LOCKED", StateBusyError),
    (15, "SQLITE_PROTOCOL", StateBusyError),
    (13, "SQLITE_FULL", StorageFullError),
    (8, "SQLITE_READONLY", StateReadOnlyError),
    (1544, "SQLITE_READONLY_DIRECTORY", StateReadOnlyError),
    (3, "SQLITE_PERM", StateReadOnlyError),
    (11, "SQLITE_CORRUPT", StateDamagedError),
    (267, "SQLITE_CORRUPT_VTAB", StateDamagedError),
    (26, "SQLITE_NOTADB", StateDamagedError),
    (1, "SQLITE_ERROR", StateDamagedError),
    (20, "SQLITE_MISMATCH", StateDamagedError),
    (19, "SQLITE_CONSTRAINT", StateDamagedError),
    (10, "SQLITE_IOERR", StorageError),
    (778, "SQLITE_IOERR_WRITE", StorageError),
    (14, "SQLITE_CANTOPEN", StorageError),
    (1032, "SQLITE_READONLY_DBMOVED", StorageError),
    (4, "SQLITE_ABORT", StorageError),
    (2, "SQLITE_INTERNAL", StorageError),
]


@pytest.mark.parametrize(("code", "name", "expected"), BY_CODE, ids=[c[1] for c in BY_CODE])
def test_each_code_is_the_error_it_means(code: int, name: str, expected: type[Exception]) -> None:
    # Given an error with that code, whatever its message says
    error = sqlite_error(code, name)

    # When it is classified (no path: no file system to ask)
    result = classify(error)

    # Then it is exactly the expected class, which says what it is
    assert type(result) is expected
    assert name in str(result) or expected in (StorageFullError, StateReadOnlyError)


def test_the_message_decides_nothing() -> None:
    # A busy error whose text says "full" or "corrupt" is still busy; a full disk
    # whose text does not say "full" is still full
    busy = sqlite3.OperationalError("database or disk is full; file is corrupt")
    busy.sqlite_errorcode = 5
    full = sqlite3.OperationalError("something went wrong")
    full.sqlite_errorcode = 13
    assert type(classify(busy)) is StateBusyError
    assert type(classify(full)) is StorageFullError


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.ProgrammingError("Cannot operate on a closed database."),
        sqlite3.InterfaceError("Error binding parameter 1"),
        sqlite_error(21, "SQLITE_MISUSE", sqlite3.InterfaceError),
        sqlite_error(25, "SQLITE_RANGE", sqlite3.InterfaceError),
        ValueError("not from SQLite"),
    ],
)
def test_a_bug_in_mapwise_is_not_classified(error: Exception) -> None:
    assert classify(error) is None
    with pytest.raises(type(error)), translated():
        raise error


def test_exit_codes_follow_the_error_tree() -> None:
    assert StateBusyError("x").exit_code == 3  # held by another live process
    assert issubclass(StateBusyError, JobLockedError)
    assert StateDamagedError("x").exit_code == 4
    for kind in (StorageError, StorageFullError, StateReadOnlyError):
        assert issubclass(kind, StorageError)
        assert kind("x").exit_code == 1


def test_busy_and_read_only_are_not_called_damage(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    for code, name in [(5, "SQLITE_BUSY"), (8, "SQLITE_READONLY"), (10, "SQLITE_IOERR")]:
        result = classify(sqlite_error(code, name), path)
        assert not isinstance(result, StateDamagedError)
        assert "repair" not in str(result)


# -- CANTOPEN and IOERR: the file system is asked why ----------------------------------


def fake_statvfs(*, read_only: bool = False, free: int = 1000) -> Any:
    flags = os.ST_RDONLY if read_only else 0
    return lambda _path: SimpleNamespace(f_flag=flags, f_bavail=free)


@pytest.mark.parametrize("code", [10, 14, 4874])  # IOERR, CANTOPEN, IOERR_SHMOPEN
def test_an_io_error_on_a_read_only_file_system_is_read_only(
    code: int, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "statvfs", fake_statvfs(read_only=True))
    result = classify(sqlite_error(code, "SQLITE_IOERR"), database)
    assert type(result) is StateReadOnlyError
    assert "read-only" in str(result)
    assert "writable" in str(result)


def test_an_io_error_with_no_free_space_is_a_full_disk(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "statvfs", fake_statvfs(free=0))
    result = classify(sqlite_error(778, "SQLITE_IOERR_WRITE"), database)
    assert type(result) is StorageFullError


def test_an_io_error_without_a_known_cause_is_storage_not_damage(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "statvfs", fake_statvfs())
    result = classify(sqlite_error(266, "SQLITE_IOERR_READ"), database)
    assert type(result) is StorageError
    assert "check the disk" in str(result)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the mode bits say")
def test_a_folder_without_write_permission_is_read_only(database: Path) -> None:
    database.parent.chmod(0o555)
    try:
        result = classify(sqlite_error(14, "SQLITE_CANTOPEN"), database)
    finally:
        database.parent.chmod(0o755)
    assert type(result) is StateReadOnlyError
    assert "not writable by this user" in str(result)


# -- real errors from SQLite ------------------------------------------------------------


def test_a_transaction_past_the_busy_timeout_is_busy(
    database: Path, short_busy_timeout: None
) -> None:
    # Given another connection in an exclusive transaction (WAL: readers still read)
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    conn = db.connect(database)
    try:
        # When this connection starts a writing transaction
        with pytest.raises(StateBusyError) as caught, db.transaction(conn):
            pytest.fail("the transaction must not start")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # Then it is "busy", exit 3, with SQLite's error kept as the cause
    assert caught.value.exit_code == 3
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert "locked by another process" in str(caught.value)
    # And the connection is usable once the lock is gone
    with db.transaction(conn):
        conn.execute("UPDATE meta SET value = value WHERE key = 'schema_version'")
    conn.close()


@pytest.mark.parametrize("readonly", [False, True])
def test_opening_a_database_locked_past_the_busy_timeout_is_busy(
    database: Path, held: sqlite3.Connection, short_busy_timeout: None, readonly: bool
) -> None:
    with pytest.raises(StateBusyError):
        db.connect(database, readonly=readonly)


def test_reading_a_database_locked_past_the_busy_timeout_is_busy(tmp_path: Path) -> None:
    # Given a database in rollback-journal mode (where a writer shuts readers out), held
    # in an exclusive transaction by another connection
    path = tmp_path / "plain.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    conn = sqlite3.connect(path, timeout=0.05)
    try:
        # When a read runs inside ``db.reading``
        with pytest.raises(StateBusyError), db.reading(conn):
            conn.execute("SELECT * FROM t").fetchall()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        conn.close()


def test_writing_through_a_read_only_connection_is_read_only(database: Path) -> None:
    conn = db.connect(database, readonly=True)
    with pytest.raises(StateReadOnlyError) as caught, db.transaction(conn):
        conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    assert caught.value.exit_code == 1
    assert not conn.in_transaction
    conn.close()


def test_a_file_of_garbage_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(StateDamagedError) as caught:
        db.connect(path)
    assert caught.value.exit_code == 4
    assert "repair" in str(caught.value)
    assert caught.value.__cause__ is not None
    assert getattr(caught.value.__cause__, "sqlite_errorname", None) == "SQLITE_NOTADB"


def test_a_database_without_the_schema_is_damaged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.commit()
    with pytest.raises(StateDamagedError, match="no such table"):
        db.connect(path)


def test_text_that_is_not_utf8_is_damaged(database: Path) -> None:
    conn = db.connect(database)
    with db.transaction(conn):
        conn.execute("INSERT INTO meta (key, value) VALUES ('bad', CAST(X'C328FF' AS TEXT))")
    with pytest.raises(StateDamagedError, match="UTF-8"), db.reading(conn):
        conn.execute("SELECT value FROM meta WHERE key = 'bad'").fetchall()
    conn.close()


class FullAtCommit(sqlite3.Connection):
    """Fails ``COMMIT`` with SQLITE_FULL and leaves the transaction open, as SQLite does."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
        return super().execute(sql, *args)


def test_a_full_disk_at_commit_is_full_and_rolled_back(database: Path) -> None:
    conn = sqlite3.connect(database, isolation_level=None, factory=FullAtCommit)
    with pytest.raises(StorageFullError, match="free some space"), db.transaction(conn):
        conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    # the failed COMMIT's transaction is rolled back: the connection can record more
    assert not conn.in_transaction
    assert conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'x'").fetchone() == (0,)
    conn.close()


def test_errors_of_the_work_inside_a_transaction_pass_unchanged(database: Path) -> None:
    conn = db.connect(database)
    with pytest.raises(KeyError), db.transaction(conn):
        raise KeyError("not the store's")
    with pytest.raises(MapwiseError, match="already classified"), db.transaction(conn):
        raise StateDamagedError("already classified")
    assert not conn.in_transaction
    conn.close()


@pytest.mark.skipif(
    sys.platform != "linux" or os.geteuid() != 0, reason="a read-only bind mount needs root"
)
@pytest.mark.parametrize("readonly", [False, True])
def test_a_read_only_file_system_is_read_only(
    database: Path, tmp_path: Path, readonly: bool
) -> None:
    # Given the database's folder bind-mounted read-only (root ignores mode bits)
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "--bind", str(database.parent), str(mount)]).returncode:
        pytest.skip("mount --bind is not permitted here")
    conn: sqlite3.Connection | None = None
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], check=True)
        # When the database is opened there (a reading connection opens: issue 14.2)
        # and written to
        with pytest.raises(StateReadOnlyError) as caught:
            conn = db.connect(mount / database.name, readonly=readonly)
            with db.transaction(conn):
                conn.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    finally:
        if conn is not None:
            conn.close()
        subprocess.run(["umount", str(mount)], check=True)
    # Then it says read-only, not damaged
    assert "the file system is read-only" in str(caught.value)
    assert "repair" not in str(caught.value)
