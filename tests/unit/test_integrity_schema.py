"""The schema check that verify and resume share (``store.dbfile``): bug N's reverse case."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mapwise.store import schema
from mapwise.store.dbfile import schema_problems


def _database(path: Path, version: int = schema.SCHEMA_VERSION) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    steps = [schema.SCHEMA_V1, *(schema.MIGRATIONS[v] for v in range(2, version + 1))]
    conn.executescript("\n".join(steps))
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))
    return conn


def test_a_database_as_mapwise_makes_it_has_no_schema_problem(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    schema.create_schema(conn)

    assert schema_problems(conn) == []


def test_an_older_version_left_unmigrated_is_judged_by_its_own_schema(tmp_path: Path) -> None:
    # a read-only open does not migrate: a version-1 database is sound as version 1
    conn = _database(tmp_path / "state.db", version=1)

    assert schema_problems(conn) == []


def test_a_column_renamed_in_the_schema_text_is_a_problem(tmp_path: Path) -> None:
    # Given a byte flipped in a column's name: the schema still parses, and
    # integrity_check passes, but every statement naming the column fails
    conn = _database(tmp_path / "state.db")
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'agent_runs'").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = ? WHERE name = 'agent_runs'",
        (sql.replace("input_tokens", "inpup_tokens"),),
    )
    conn.close()
    conn = sqlite3.connect(tmp_path / "state.db")

    # Then it is a problem naming the table, and integrity_check alone is blind to it
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert schema_problems(conn) == ["table agent_runs differs from schema version 3"]


def test_a_changed_trigger_and_an_unknown_version_are_problems(tmp_path: Path) -> None:
    conn = _database(tmp_path / "state.db")
    (sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'items_counted_insert'"
    ).fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = ? WHERE name = 'items_counted_insert'",
        (sql.replace("n = n + 1", "n = n + 7"),),
    )
    conn.close()
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)

    assert schema_problems(conn) == ["trigger items_counted_insert differs from schema version 3"]
    conn.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    assert schema_problems(conn) == ["unknown schema version 0"]


def test_whitespace_alone_is_no_problem(tmp_path: Path) -> None:
    conn = _database(tmp_path / "state.db")
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = ? WHERE name = 'runs'", (sql.replace("\n    ", "\n\t"),)
    )
    conn.close()

    assert schema_problems(sqlite3.connect(tmp_path / "state.db")) == []
