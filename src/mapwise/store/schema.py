"""The job database's schema, its version, and the migrations from older versions.

Version history:

- 1: job, runs, items, attempts, steps, phase_steps, meta; ``item_counts`` kept by
  triggers so that listing many jobs reads a few rows per job, never every item.
- 2: worktree mode: each item's branch, worktree, start commit, the commit waiting in
  the merge queue and its place there (``merge_seq``), and the files of a merge conflict.
  An older database gains the columns, empty, when it is opened for writing; a read-only
  open leaves it as it is and readers take the missing columns as empty.
- 3: agent steps: the ledger (``agent_runs``, one row per agent step execution: its
  session, cost and tokens), and what continuing an attempt needs: the sessions an
  attempt planned, the step it started at and the captures it carried in, and each
  step's captured value and part (``workspace.setup``). Brought forward like version 2.
"""

from __future__ import annotations

import sqlite3

from mapwise.errors import StateDamagedError

SCHEMA_VERSION = 3

# version -> the statements that bring a database of the version before up to it
MIGRATIONS: dict[int, str] = {
    2: """
ALTER TABLE items ADD COLUMN branch TEXT;
ALTER TABLE items ADD COLUMN worktree TEXT;
ALTER TABLE items ADD COLUMN start_commit TEXT;
ALTER TABLE items ADD COLUMN head_commit TEXT;
ALTER TABLE items ADD COLUMN merge_seq INTEGER;
ALTER TABLE items ADD COLUMN conflict_files TEXT;
CREATE INDEX items_by_merge ON items (merge_seq) WHERE merge_seq IS NOT NULL;
CREATE INDEX items_by_branch ON items (lower(branch)) WHERE branch IS NOT NULL;
""",
    3: """
ALTER TABLE attempts ADD COLUMN resume_from INTEGER;
ALTER TABLE attempts ADD COLUMN carried TEXT;
ALTER TABLE attempts ADD COLUMN sessions TEXT;
ALTER TABLE steps ADD COLUMN part TEXT;
ALTER TABLE steps ADD COLUMN captured TEXT;
CREATE TABLE agent_runs (
    id                    INTEGER PRIMARY KEY,
    attempt_id            INTEGER REFERENCES attempts (id),
    item_idx              INTEGER,
    phase                 TEXT NOT NULL,
    run_no                INTEGER NOT NULL,
    step_index            INTEGER NOT NULL,
    on_failure            INTEGER NOT NULL DEFAULT 0,
    agent                 TEXT NOT NULL,
    session_id            TEXT,
    continued             INTEGER NOT NULL DEFAULT 0,
    result_read           INTEGER NOT NULL DEFAULT 0,
    is_error              INTEGER NOT NULL DEFAULT 0,
    subtype               TEXT,
    cost_usd              REAL,
    input_tokens          INTEGER NOT NULL DEFAULT 0,
    output_tokens         INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
    cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
    turns                 INTEGER NOT NULL DEFAULT 0,
    model                 TEXT,
    api_ms                REAL,
    started_at            REAL NOT NULL,
    ended_at              REAL NOT NULL
);
CREATE INDEX agent_runs_by_item ON agent_runs (item_idx);
CREATE INDEX agent_runs_by_attempt ON agent_runs (attempt_id);
""",
}

SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE job (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    job_id          TEXT NOT NULL,
    workflow_name   TEXT NOT NULL,
    workflow_path   TEXT NOT NULL,
    workflow_source TEXT NOT NULL,
    workflow_sha256 TEXT NOT NULL,
    status          TEXT NOT NULL,
    phase           TEXT NOT NULL,
    status_reason   TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    input_sha256    TEXT,
    items_sha256    TEXT,
    items_frozen_at REAL,
    total_items     INTEGER,
    captures        TEXT NOT NULL DEFAULT '{}',
    options         TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE runs (
    run_no     INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    ended_at   REAL,
    outcome    TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    host       TEXT NOT NULL,
    reason     TEXT
);
CREATE TABLE items (
    idx         INTEGER PRIMARY KEY,
    item_id     TEXT NOT NULL UNIQUE,
    data        TEXT NOT NULL,
    status      TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    retry_at    REAL,
    duration    REAL NOT NULL DEFAULT 0,
    finished_at REAL,
    error_kind  TEXT,
    exit_code   INTEGER,
    last_error  TEXT,
    result      TEXT
);
CREATE INDEX items_by_status ON items (status, idx);
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    item_idx    INTEGER NOT NULL REFERENCES items (idx),
    attempt_no  INTEGER NOT NULL,
    run_no      INTEGER NOT NULL,
    slot        INTEGER,
    host        TEXT,
    started_at  REAL NOT NULL,
    ended_at    REAL,
    duration    REAL,
    outcome     TEXT NOT NULL,
    error_kind  TEXT,
    exit_code   INTEGER,
    signal      INTEGER,
    stderr_tail TEXT,
    log_path    TEXT
);
CREATE INDEX attempts_by_item ON attempts (item_idx, attempt_no);
CREATE INDEX attempts_by_outcome ON attempts (outcome);
CREATE TABLE steps (
    id          INTEGER PRIMARY KEY,
    attempt_id  INTEGER REFERENCES attempts (id),
    phase       TEXT NOT NULL,
    run_no      INTEGER NOT NULL,
    step_index  INTEGER NOT NULL,
    on_failure  INTEGER NOT NULL DEFAULT 0,
    label       TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL NOT NULL,
    duration    REAL NOT NULL,
    exit_code   INTEGER,
    signal      INTEGER,
    timed_out   INTEGER NOT NULL DEFAULT 0,
    error_kind  TEXT,
    stderr_tail TEXT,
    log_path    TEXT
);
CREATE INDEX steps_by_attempt ON steps (attempt_id);
CREATE TABLE item_counts (
    status  TEXT PRIMARY KEY,
    n       INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0
);
CREATE TRIGGER items_counted_insert AFTER INSERT ON items BEGIN
    INSERT INTO item_counts (status, n, seconds) VALUES (new.status, 1, new.duration)
    ON CONFLICT (status) DO UPDATE SET n = n + 1, seconds = seconds + new.duration;
END;
CREATE TRIGGER items_counted_update AFTER UPDATE OF status, duration ON items BEGIN
    UPDATE item_counts SET n = n - 1, seconds = seconds - old.duration
    WHERE status = old.status;
    INSERT INTO item_counts (status, n, seconds) VALUES (new.status, 1, new.duration)
    ON CONFLICT (status) DO UPDATE SET n = n + 1, seconds = seconds + new.duration;
END;
CREATE TRIGGER items_counted_delete AFTER DELETE ON items BEGIN
    UPDATE item_counts SET n = n - 1, seconds = seconds - old.duration
    WHERE status = old.status;
END;
CREATE TABLE phase_steps (
    phase      TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    status     TEXT NOT NULL,
    captures   TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL,
    PRIMARY KEY (phase, step_index)
);
"""


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the current schema in an empty database and record its version.

    Version 1's tables, then every migration: one path to each version, whether a
    database is new or old.
    """
    steps = "\n".join(MIGRATIONS[v] for v in range(2, SCHEMA_VERSION + 1))
    version = f"INSERT INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
    conn.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA_V1}\n{steps}\n{version}\nCOMMIT;")


def read_schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in ``meta``; missing metadata is ``StateDamagedError``.

    A failing read is left to the caller's edge (``db.connect``) to classify: a missing
    table is damage, but a locked database or an unreadable ``-shm`` file is not.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise StateDamagedError("the database records no schema version")
    return int(row[0])


def migrate(conn: sqlite3.Connection, *, readonly: bool = False) -> None:
    """Bring an older database to ``SCHEMA_VERSION``; refuse a newer one (exit 4).

    Each version's steps and its new number are one transaction, so a crash leaves the
    database at one version or the next. A read-only connection migrates nothing.
    """
    version = read_schema_version(conn)
    if version > SCHEMA_VERSION:
        raise StateDamagedError(
            f"the job's database is schema version {version}, newer than this mapwise "
            f"supports ({SCHEMA_VERSION}); upgrade mapwise"
        )
    if readonly:
        return
    for target in range(version + 1, SCHEMA_VERSION + 1):
        bump = f"UPDATE meta SET value = '{target}' WHERE key = 'schema_version';"
        conn.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[target]}\n{bump}\nCOMMIT;")
