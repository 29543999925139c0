"""How an attempt goes on after a run of it was lost with its Dask worker
(``domain.continuation.continued``).

The rule must be the one a resume applies after a crash (``store.continuation``): the
property test records the same progress in a real database, asks the store for the next
attempt's continuation, and compares. The examples pin the parts the store does not
decide the same way: the budget and the worktree of a run within one map phase.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mapwise.domain.continuation import continued
from mapwise.domain.records import (
    AttemptTask,
    Continuation,
    ItemWorkspace,
    Progress,
    SessionStarted,
    StepDone,
    StepRecord,
)
from mapwise.domain.states import ErrorKind
from mapwise.domain.usage import AgentUsage
from mapwise.store.batches import insert_steps
from mapwise.store.continuation import ClaimPlan, plan_attempt, record_session
from mapwise.store.schema import create_schema
from mapwise.workflow.model import Step

TEMPLATE = (
    Step(claude="plan", capture="plan"),
    Step(shell="echo ${plan}", capture="echoed"),
    Step(claude="do it"),
    Step(codex="review"),
    Step(shell="true"),
)
CAPTURES = {i: s.capture for i, s in enumerate(TEMPLATE) if s.capture is not None}
AGENTS = {i for i, s in enumerate(TEMPLATE) if s.agent}
ATTEMPT_ID = 7


def task(**changes: object) -> AttemptTask:
    values: dict[str, object] = {
        "job_id": "j",
        "attempt_id": ATTEMPT_ID,
        "item_index": 0,
        "item_id": "a",
        "item": {},
        "attempt_no": 1,
        "slot": 0,
        "log_path": "log",
        "item_file": "item.json",
        "sessions": {0: "S0", 2: "S2"},
        **changes,
    }
    return AttemptTask(**values)  # type: ignore[arg-type]


def done(
    index: int,
    *,
    ok: bool = True,
    captured: str | None = None,
    cost: float | None = None,
    **fields: object,
) -> StepDone:
    usage = None if cost is None else AgentUsage(agent="claude", session_id="S", cost_usd=cost)
    record = StepRecord(
        step_index=index,
        label="x",
        started_at=0.0,
        ended_at=0.0,
        duration=0.0,
        error_kind=None if ok else ErrorKind.EXIT_CODE,
        captured=captured,
        agent=usage,
        **fields,  # type: ignore[arg-type]
    )
    return StepDone(ATTEMPT_ID, 0, record)


def go_on(first: AttemptTask, progress: list[Progress]) -> AttemptTask:
    return continued(first, progress, captures=CAPTURES, agents=AGENTS)


def test_a_run_lost_before_any_progress_starts_at_the_first_step_with_its_planned_session() -> None:
    after = go_on(task(), [])
    assert after.resume == Continuation(start_at=0, captures={}, session="S0")
    assert after.sessions == {0: "S0", 2: "S2"}


def test_the_steps_a_lost_run_finished_are_skipped_and_their_captures_carried() -> None:
    after = go_on(task(), [done(0, captured="the plan"), done(1, captured="echo")])
    assert after.resume == Continuation(
        start_at=2, captures={"plan": "the plan", "echoed": "echo"}, session="S2"
    )


def test_a_session_an_agent_named_is_resumed_when_its_step_is_where_the_run_stopped() -> None:
    progress: list[Progress] = [
        done(0, captured="p"),
        done(1, captured="e"),
        done(2),
        SessionStarted(ATTEMPT_ID, 3, "thread-1"),
    ]
    after = go_on(task(), progress)
    assert after.resume is not None
    assert (after.resume.start_at, after.resume.session) == (3, "thread-1")
    assert after.sessions[3] == "thread-1"


def test_a_second_lost_run_goes_on_from_where_both_runs_got_to() -> None:
    first = task(resume=Continuation(start_at=1, captures={"plan": "p"}, session=None))
    after = go_on(first, [done(1, captured="e"), done(2)])
    assert after.resume == Continuation(
        start_at=3, captures={"plan": "p", "echoed": "e"}, session=None
    )


def test_the_budget_left_is_less_what_the_finished_agent_steps_cost() -> None:
    after = go_on(task(budget_usd=1.0), [done(0, captured="p", cost=0.25)])
    assert after.budget_usd == 0.75
    assert go_on(task(), [done(0, cost=0.25)]).budget_usd is None


def _workspace(start: str | None) -> ItemWorkspace:
    return ItemWorkspace(
        repo="r", worktree="w", branch="b", job_branch="jb", start=start, subdir=""
    )


def test_a_worktree_is_kept_as_the_lost_run_left_it_only_when_a_step_was_finished() -> None:
    # no step finished: the run starts over from the item's start commit, as before
    assert go_on(task(workspace=_workspace("abc")), []).workspace == _workspace("abc")
    # a step finished: its changes are in the worktree, which the next run goes on in
    after = go_on(task(workspace=_workspace("abc")), [done(0, captured="p")])
    assert after.workspace == _workspace(None)


# -- the same rule as a resume after a crash -------------------------------------------


@st.composite
def progress_lists(draw: st.DrawFn) -> tuple[int, list[Progress]]:
    """A continuation's start, and the progress its run sent: steps in order (the last
    may have failed or be a handler's), and sessions named along the way."""
    start = draw(st.integers(0, len(TEMPLATE) - 1))
    notes: list[Progress] = []
    for index in range(start, draw(st.integers(start, len(TEMPLATE)))):
        if index in AGENTS and draw(st.booleans()):
            notes.append(SessionStarted(ATTEMPT_ID, index, f"named-{index}"))
        kind = draw(st.sampled_from(["ok", "ok", "ok", "failed", "handler"]))
        captured = draw(st.sampled_from([None, "", "value"]))
        if kind == "failed":
            notes.append(done(index, ok=False))
        elif kind == "handler":
            notes.append(done(index, on_failure=True))
        else:
            notes.append(done(index, captured=captured))
    return start, notes


def _store_continuation(first: AttemptTask, notes: list[Progress]) -> Continuation | None:
    """What a resume after a crash would continue, with ``notes`` recorded."""
    with tempfile.TemporaryDirectory() as tmp:
        return _recorded_then_planned(Path(tmp) / "state.db", first, notes)


def _recorded_then_planned(
    db: Path, first: AttemptTask, notes: list[Progress]
) -> Continuation | None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        create_schema(conn)
        conn.execute("INSERT INTO items (idx, item_id, data, status) VALUES (0, 'a', '{}', 'x')")
        resume = first.resume
        conn.execute(
            "INSERT INTO attempts (id, item_idx, attempt_no, run_no, started_at, outcome,"
            " resume_from, carried, sessions) VALUES (?, 0, 1, 1, 0, 'interrupted', ?, ?, ?)",
            (
                ATTEMPT_ID,
                resume.start_at if resume else None,
                json.dumps(resume.captures) if resume and resume.captures else None,
                json.dumps({str(k): v for k, v in first.sessions.items()}),
            ),
        )
        for note in notes:
            if isinstance(note, StepDone):
                insert_steps(conn, ATTEMPT_ID, "map", 1, [note.record], 0)
            else:
                record_session(conn, ATTEMPT_ID, note.step_index, note.session_id)
        plan = ClaimPlan.of(TEMPLATE, continue_failed=False, item_budget=None)
        assert plan is not None
        return plan_attempt(conn, 0, plan).resume
    finally:
        conn.close()


@settings(max_examples=60, deadline=None)
@given(drawn=progress_lists(), carried=st.sampled_from([{}, {"plan": "p"}]))
def test_a_lost_run_continues_exactly_where_a_resume_after_a_crash_would(
    drawn: tuple[int, list[Progress]], carried: dict[str, str]
) -> None:
    start, notes = drawn
    first = task(resume=Continuation(start_at=start, captures=carried) if start else None)
    assert go_on(first, notes).resume == _store_continuation(first, notes)
