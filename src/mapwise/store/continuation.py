"""What a claimed attempt continues, and the agent sessions it will use (SPEC section 9).

Decided inside the claim's transaction, from what the item's attempt before it left on
record: an attempt that was interrupted (or that failed, with ``retry.continue``)
continues at its first template step that did not succeed, with the captures of the
steps before, and resumes the session of that step when it is an agent step. Every
agent session an attempt will start is chosen here and committed with the claim, before
any process starts, so that a crash can always name the session to resume.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mapwise.domain.continuation import carried_past
from mapwise.domain.records import Continuation

if TYPE_CHECKING:  # the workflow model (pydantic) is not needed to read a job's state
    from mapwise.workflow.model import Step


@dataclass(frozen=True)
class ClaimPlan:
    """What claims need to know of the template (None of it for a one-step shell job)."""

    steps: int
    agents: dict[int, str]  # template step index -> "claude" or "codex"
    captures: dict[int, str]  # template step index -> its capture's name
    continue_failed: bool = False  # retry.continue
    item_budget: float | None = None  # map.max_cost_usd

    @classmethod
    def of(
        cls, template: tuple[Step, ...], *, continue_failed: bool, item_budget: float | None
    ) -> ClaimPlan | None:
        """None when there is nothing to plan: one shell step, no budget, no continue.

        Such a claim stays exactly what it was before agent steps existed (the hot path
        of short commands)."""
        agents: dict[int, str] = {i: s.agent for i, s in enumerate(template) if s.agent}
        if len(template) == 1 and not agents and item_budget is None and not continue_failed:
            return None
        captures = {i: s.capture for i, s in enumerate(template) if s.capture is not None}
        return cls(len(template), agents, captures, continue_failed, item_budget)


@dataclass(frozen=True)
class Planned:
    """A claim's continuation, sessions and budget."""

    resume: Continuation | None
    sessions: dict[int, str]
    budget: float | None
    continues: bool  # the attempt goes on from the one before (its worktree is not reset)


def plan_attempt(conn: sqlite3.Connection, item_index: int, plan: ClaimPlan) -> Planned:
    """The continuation and sessions of the item's next attempt."""
    before = conn.execute(
        "SELECT id, outcome, resume_from, carried, sessions FROM attempts WHERE item_idx = ?"
        " ORDER BY attempt_no DESC, id ASC LIMIT 1",
        (item_index,),
    ).fetchone()
    resume: Continuation | None = None
    continues = False
    if before is not None and (
        before[1] == "interrupted" or (before[1] == "failed" and plan.continue_failed)
    ):
        continues = True
        resume = _continuation(conn, before, plan)
    start = resume.start_at if resume else 0
    sessions = {
        index: str(uuid.uuid4())
        for index, agent in plan.agents.items()
        if index >= start and agent == "claude"
    }
    if resume is not None and resume.session is not None:
        sessions[resume.start_at] = resume.session
    budget = None
    if plan.item_budget is not None:
        spent = conn.execute(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM agent_runs WHERE item_idx = ?", (item_index,)
        ).fetchone()[0]
        budget = plan.item_budget - spent
    return Planned(resume, sessions, budget, continues)


def _continuation(conn: sqlite3.Connection, before: sqlite3.Row, plan: ClaimPlan) -> Continuation:
    """Where the attempt ``before`` stopped: its first template step that did not succeed."""
    attempt_id, _, resume_from, carried, sessions = tuple(before)
    done = conn.execute(
        "SELECT step_index, captured FROM steps WHERE attempt_id = ? AND phase = 'map'"
        " AND on_failure = 0 AND part IS NULL AND error_kind IS NULL ORDER BY step_index",
        (attempt_id,),
    ).fetchall()
    before_captures = json.loads(carried) if carried else {}
    start, captures = carried_past(resume_from or 0, before_captures, done, plan.captures)
    planned: dict[str, str] = json.loads(sessions) if sessions else {}
    session = planned.get(str(start)) if start in plan.agents else None
    return Continuation(start_at=start, captures=captures, session=session)


def record_plan(conn: sqlite3.Connection, attempt_id: int, planned: Planned) -> None:
    """Put the attempt's sessions and continuation on record, in the claim's transaction."""
    resume = planned.resume
    conn.execute(
        "UPDATE attempts SET resume_from = ?, carried = ?, sessions = ? WHERE id = ?",
        (
            resume.start_at if resume else None,
            json.dumps(resume.captures) if resume and resume.captures else None,
            json.dumps({str(k): v for k, v in planned.sessions.items()})
            if planned.sessions
            else None,
            attempt_id,
        ),
    )


def record_session(
    conn: sqlite3.Connection, attempt_id: int, step_index: int, session: str
) -> None:
    """A session an agent named while running (Codex's thread id), for a resume to find."""
    row = conn.execute("SELECT sessions FROM attempts WHERE id = ?", (attempt_id,)).fetchone()
    if row is None:
        return
    sessions = json.loads(row[0]) if row[0] else {}
    sessions[str(step_index)] = session
    conn.execute(
        "UPDATE attempts SET sessions = ? WHERE id = ?", (json.dumps(sessions), attempt_id)
    )
