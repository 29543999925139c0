"""What a job database must be, beyond what SQLite's own check looks at: its schema.

``PRAGMA integrity_check`` checks pages, b-trees and that each index matches its table,
but not the text of the schema: a flipped byte there that still parses (a column renamed
``inpup_tokens``, a type, a default, a trigger's arithmetic) passes it, and the job then
fails at its first write that names the column. ``schema_problems`` compares the
database's schema with the one ``schema`` builds for the version the database records.
"""

from __future__ import annotations

import sqlite3
from functools import cache

from mapwise.store import schema

# objects SQLite may add by itself; never made by mapwise, never a sign of damage
_SQLITE_OWN = ("sqlite_stat", "sqlite_sequence")

SchemaRow = tuple[str, str, str, str | None]  # type, name, table, SQL (whitespace folded)


def _folded(sql: str | None) -> str | None:
    return None if sql is None else " ".join(sql.split())


def _rows(conn: sqlite3.Connection) -> frozenset[SchemaRow]:
    return frozenset(
        (kind, name, table, _folded(sql))
        for kind, name, table, sql in conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master"
        )
        if not name.startswith(_SQLITE_OWN)
    )


@cache
def expected_schema(version: int) -> frozenset[SchemaRow]:
    """The schema of a database at ``version``, built the way mapwise builds it."""
    conn = sqlite3.connect(":memory:")
    try:
        script = "\n".join(
            [schema.SCHEMA_V1, *(schema.MIGRATIONS[v] for v in range(2, version + 1))]
        )
        conn.executescript(script)
        return _rows(conn)
    finally:
        conn.close()


def schema_problems(conn: sqlite3.Connection) -> list[str]:
    """How the database's schema differs from what its recorded version must be."""
    version = schema.read_schema_version(conn)
    if not 1 <= version <= schema.SCHEMA_VERSION:
        return [f"unknown schema version {version}"]
    actual = _rows(conn)
    expected = expected_schema(version)
    problems = [
        f"{kind} {name} differs from schema version {version}"
        for kind, name, _, _ in sorted(expected - actual, key=str)
    ]
    known = {(kind, name) for kind, name, _, _ in expected}
    problems += [
        f"unexpected {kind} {name} in the schema"
        for kind, name, _, _ in sorted(actual - expected, key=str)
        if (kind, name) not in known
    ]
    return problems
