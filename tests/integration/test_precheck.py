"""A resume's database check, started while the program starts (issue 15, B3).

The check's result is used only for the very files it checked: a database written to,
replaced, or given a WAL since is checked again, so starting early can never let a
damaged database through (the damage suites run every resume through the same entry).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mapwise.cli.entry import _resumed_database
from mapwise.store import precheck


def _database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT UNIQUE)")
    conn.executemany("INSERT INTO t (y) VALUES (?)", [(str(i),) for i in range(1000)])
    conn.commit()
    conn.close()
    return path


def test_the_result_is_taken_for_the_files_it_checked(tmp_path: Path) -> None:
    database = _database(tmp_path / "state.db")
    precheck.start(database)
    assert precheck.take(database) == [("ok",)]
    assert precheck.take(database) is None  # taken once


def test_a_database_written_after_the_check_is_checked_again(tmp_path: Path) -> None:
    database = _database(tmp_path / "state.db")
    precheck.start(database)
    precheck._checks[Path(os.path.abspath(database))].join()
    conn = sqlite3.connect(database)
    conn.executemany("INSERT INTO t (y) VALUES (?)", [(f"more {i}",) for i in range(500)])
    conn.commit()
    conn.close()
    assert precheck.take(database) is None


def test_a_replaced_database_is_checked_again(tmp_path: Path) -> None:
    database = _database(tmp_path / "state.db")
    precheck.start(database)
    precheck._checks[Path(os.path.abspath(database))].join()
    other = _database(tmp_path / "other.db")
    os.replace(other, database)
    assert precheck.take(database) is None


def test_nothing_started_or_nothing_there_gives_nothing(tmp_path: Path) -> None:
    assert precheck.take(tmp_path / "never.db") is None
    precheck.start(tmp_path / "missing.db")
    assert precheck.take(tmp_path / "missing.db") is None
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    precheck.start(garbage)
    assert precheck.take(garbage) is None


def test_a_read_only_check_leaves_the_wal_as_it_was(tmp_path: Path) -> None:
    database = _database(tmp_path / "state.db")
    writer = sqlite3.connect(database)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.executemany("INSERT INTO t (y) VALUES (?)", [(f"w{i}",) for i in range(200)])
    writer.commit()
    wal = tmp_path / "state.db-wal"
    before = wal.read_bytes()
    precheck.start(database)
    assert precheck.take(database) == [("ok",)]
    assert wal.read_bytes() == before
    writer.close()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["resume", "job1"], ".mapwise/jobs/job1/state.db"),
        (["resume", "--max-parallel", "4", "job1"], ".mapwise/jobs/job1/state.db"),
        (["resume", "job1", "--state-dir", "st"], "st/jobs/job1/state.db"),
        (["resume", "--state-dir=st", "-q", "job1"], "st/jobs/job1/state.db"),
        (["resume", "--retry-failed", "job1", "--max-cost", "5"], ".mapwise/jobs/job1/state.db"),
        (["resume", "../etc"], None),
        (["resume"], None),
        (["status", "job1"], None),
        ([], None),
    ],
)
def test_the_resumed_database_is_read_from_the_arguments(
    argv: list[str], expected: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    found = _resumed_database(argv)
    assert found == (None if expected is None else tmp_path / expected)


def test_the_state_dir_variable_is_used_without_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAPWISE_STATE_DIR", str(tmp_path / "env-state"))
    assert _resumed_database(["resume", "j"]) == tmp_path / "env-state/jobs/j/state.db"


def _loaded_by(imports: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after ``import IMPORTS``."""
    code = (
        f"import sys; import {imports}; "
        f"print(' '.join(sorted(m for m in {modules!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_console_script_and_python_m_start_from_the_light_entry() -> None:
    # the check starts before the CLI's imports: the entry must not import them itself
    assert _loaded_by("mapwise.cli.entry", ("click", "pydantic", "mapwise.cli.main")) == []
    main = subprocess.run(
        [sys.executable, "-m", "mapwise", "--version"], capture_output=True, text=True, check=True
    )
    assert "mapwise" in main.stdout


def test_the_empty_wal_the_check_proper_opens_does_not_count_as_a_change(tmp_path: Path) -> None:
    database = _database(tmp_path / "state.db")
    setup = sqlite3.connect(database)
    setup.execute("PRAGMA journal_mode = WAL")
    setup.close()  # a clean close: no WAL file left
    precheck.start(database)
    precheck._checks[Path(os.path.abspath(database))].join()
    opened = sqlite3.connect(database)  # as the check proper does: an empty WAL appears
    opened.execute("SELECT COUNT(*) FROM t").fetchone()
    assert (tmp_path / "state.db-wal").exists()
    assert precheck.take(database) == [("ok",)]
    opened.close()


def test_the_reading_commands_start_without_the_workflow_model() -> None:
    # the CLI and the library face import the store for `jobs`, `status`, `dlq`; the
    # workflow model (pydantic, about 0.1 s) waits for run, resume and validate
    assert _loaded_by("mapwise.cli.main, mapwise.api", ("pydantic", "mapwise.workflow.model")) == []
