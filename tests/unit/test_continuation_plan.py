"""Where a claimed attempt continues, and which sessions it gets (``store.continuation``).

The claim reads what the attempt before left on record; these tests write those rows
by hand into a real database of the current schema, then ask for the next attempt's plan.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from mapwise.store.continuation import ClaimPlan, plan_attempt
from mapwise.store.schema import create_schema
from mapwise.workflow.model import Step

TEMPLATE = (
    Step(claude="plan", capture="plan"),
    Step(shell="echo ${plan}", capture="echoed"),
    Step(claude="do it"),
    Step(codex="review"),
)


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    create_schema(connection)
    connection.execute(
        "INSERT INTO items (idx, item_id, data, status) VALUES (0, 'a', '{}', 'pending')"
    )
    return connection


def attempt(
    conn: sqlite3.Connection,
    outcome: str,
    *,
    no: int,
    resume_from: int | None = None,
    carried: dict[str, str] | None = None,
    sessions: dict[str, str] | None = None,
) -> int:
    cursor = conn.execute(
        "INSERT INTO attempts (item_idx, attempt_no, run_no, started_at, outcome, resume_from,"
        " carried, sessions) VALUES (0, ?, 1, 0, ?, ?, ?, ?)",
        (
            no,
            outcome,
            resume_from,
            json.dumps(carried) if carried else None,
            json.dumps(sessions) if sessions else None,
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def step(
    conn: sqlite3.Connection, attempt_id: int, index: int, *, ok: bool = True, **cols: object
) -> None:
    conn.execute(
        "INSERT INTO steps (attempt_id, phase, run_no, step_index, label, started_at, ended_at,"
        " duration, error_kind, captured, part) VALUES (?, 'map', 1, ?, 'x', 0, 0, 0, ?, ?, ?)",
        (attempt_id, index, None if ok else "exit_code", cols.get("captured"), cols.get("part")),
    )


def plan(**changes: object) -> ClaimPlan:
    made = ClaimPlan.of(TEMPLATE, continue_failed=False, item_budget=None)
    assert made is not None
    return dataclasses.replace(made, **changes)


def test_a_one_step_shell_template_plans_nothing() -> None:
    # the claim of short shell jobs stays what it was: no query, no column written
    assert ClaimPlan.of((Step(shell="true"),), continue_failed=False, item_budget=None) is None
    assert ClaimPlan.of((Step(shell="true"),), continue_failed=True, item_budget=None)
    assert ClaimPlan.of((Step(claude="x"),), continue_failed=False, item_budget=None)


def test_a_first_attempt_gets_a_new_session_for_each_claude_step(conn: sqlite3.Connection) -> None:
    planned = plan_attempt(conn, 0, plan())
    assert planned.resume is None and not planned.continues and planned.budget is None
    assert set(planned.sessions) == {0, 2}  # codex names its own thread when it starts
    assert all(uuid.UUID(s) for s in planned.sessions.values())


def test_an_interrupted_attempt_continues_at_its_first_unfinished_step(
    conn: sqlite3.Connection,
) -> None:
    before = attempt(conn, "interrupted", no=1, sessions={"0": "S0", "2": "S2"})
    step(conn, before, 0, captured="the plan")
    step(conn, before, 1, captured="echo")
    step(conn, before, 0, part="workspace.setup")  # a worktree's setup step is not one of them

    planned = plan_attempt(conn, 0, plan())

    assert planned.continues
    assert planned.resume is not None
    assert planned.resume.start_at == 2
    assert planned.resume.captures == {"plan": "the plan", "echoed": "echo"}
    assert planned.resume.session == "S2"  # the agent step that was running is resumed
    assert planned.sessions[2] == "S2"


def test_a_continuation_of_a_continuation_carries_the_captures_along(
    conn: sqlite3.Connection,
) -> None:
    before = attempt(
        conn, "interrupted", no=2, resume_from=2, carried={"plan": "p"}, sessions={"2": "S2"}
    )
    step(conn, before, 2)
    planned = plan_attempt(conn, 0, plan())
    assert planned.resume is not None
    assert (planned.resume.start_at, planned.resume.captures) == (3, {"plan": "p"})
    assert planned.resume.session is None  # the codex step never named a thread


def test_only_the_steps_that_succeeded_in_a_row_are_skipped(conn: sqlite3.Connection) -> None:
    before = attempt(conn, "interrupted", no=1)
    step(conn, before, 0, captured="p")
    step(conn, before, 1, ok=False)
    step(conn, before, 2)
    planned = plan_attempt(conn, 0, plan())
    assert planned.resume is not None and planned.resume.start_at == 1


@pytest.mark.parametrize(("continue_failed", "continues"), [(False, False), (True, True)])
def test_a_failed_attempt_starts_over_unless_retry_continue(
    conn: sqlite3.Connection, continue_failed: bool, continues: bool
) -> None:
    before = attempt(conn, "failed", no=1, sessions={"0": "S0", "2": "S2"})
    step(conn, before, 0, captured="p")
    step(conn, before, 1, captured="e")
    step(conn, before, 2, ok=False)
    planned = plan_attempt(conn, 0, plan(continue_failed=continue_failed))
    assert planned.continues is continues
    if continues:
        assert planned.resume is not None and planned.resume.session == "S2"
    else:
        assert planned.resume is None
        assert "S0" not in planned.sessions.values()  # new sessions, from the start


def test_the_item_budget_is_what_its_agents_have_not_spent_yet(conn: sqlite3.Connection) -> None:
    before = attempt(conn, "failed", no=1)
    for usd in (0.25, 0.5, None):
        conn.execute(
            "INSERT INTO agent_runs (attempt_id, item_idx, phase, run_no, step_index, agent,"
            " cost_usd, started_at, ended_at) VALUES (?, 0, 'map', 1, 0, 'claude', ?, 0, 0)",
            (before, usd),
        )
    planned = plan_attempt(conn, 0, plan(item_budget=1.0))
    assert planned.budget == pytest.approx(0.25)
