"""The ledger: one row per agent step execution, summed per attempt, item and job.

Rows are written with the step records they belong to (``batches.insert_steps``), in the
same transaction, so a step on record always has its cost on record too. Sums are read
with SQL over ``agent_runs``: a job of shell steps has no rows and pays nothing. A
database older than schema version 3 opened read-only has no ledger: its cost is zero.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mapwise.domain.records import StepRecord
from mapwise.domain.usage import Cost

_SUMS = (
    "COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens), 0),"
    " COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_read_tokens), 0),"
    " COALESCE(SUM(cache_creation_tokens), 0), COALESCE(SUM(turns), 0), COUNT(*),"
    " COUNT(DISTINCT session_id), COALESCE(SUM(continued), 0)"
)


def insert_runs(
    conn: sqlite3.Connection,
    attempt_id: int | None,
    item_index: int | None,
    phase: str,
    run_no: int,
    records: Sequence[StepRecord],
) -> None:
    rows = []
    for r in records:
        u = r.agent
        assert u is not None
        rows.append(
            (
                attempt_id,
                item_index,
                phase,
                run_no,
                r.step_index,
                int(r.on_failure),
                u.agent,
                u.session_id,
                int(u.continued),
                int(u.result_read),
                int(u.is_error),
                u.subtype,
                u.cost_usd,
                u.input_tokens,
                u.output_tokens,
                u.cache_read_tokens,
                u.cache_creation_tokens,
                u.turns,
                u.model,
                u.api_ms,
                r.started_at,
                r.ended_at,
            )
        )
    conn.executemany(
        "INSERT INTO agent_runs (attempt_id, item_idx, phase, run_no, step_index, on_failure,"
        " agent, session_id, continued, result_read, is_error, subtype, cost_usd,"
        " input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, turns,"
        " model, api_ms, started_at, ended_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def has_ledger(conn: sqlite3.Connection) -> bool:
    """Whether the database has the ledger (schema 3; an older one opened read-only has
    none)."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_runs'"
    ).fetchone()
    return row is not None


def _cost(row: Sequence[Any]) -> Cost:
    usd, tin, tout, cread, ccreate, turns, runs, sessions, resumed = row
    return Cost(
        usd=float(usd or 0.0),
        input_tokens=int(tin or 0),
        output_tokens=int(tout or 0),
        cache_read_tokens=int(cread or 0),
        cache_creation_tokens=int(ccreate or 0),
        turns=int(turns or 0),
        runs=int(runs or 0),
        sessions=int(sessions or 0),
        resumed=int(resumed or 0),
    )


def job_cost(conn: sqlite3.Connection) -> Cost:
    """Everything the job's agents spent, in every phase and run."""
    if not has_ledger(conn):
        return Cost()
    return _cost(conn.execute(f"SELECT {_SUMS} FROM agent_runs").fetchone())


def item_costs(conn: sqlite3.Connection, indexes: Sequence[int] | None = None) -> dict[int, Cost]:
    """Each item's spend (only items whose agents ran appear)."""
    if not has_ledger(conn):
        return {}
    where = ""
    params: tuple[int, ...] = ()
    if indexes is not None:
        if not indexes:
            return {}
        where = f" AND item_idx IN ({', '.join('?' for _ in indexes)})"
        params = tuple(indexes)
    rows = conn.execute(
        f"SELECT item_idx, {_SUMS} FROM agent_runs WHERE item_idx IS NOT NULL{where}"
        " GROUP BY item_idx",
        params,
    ).fetchall()
    return {row[0]: _cost(tuple(row)[1:]) for row in rows}


@dataclass(frozen=True)
class AgentRunRecord:
    """One agent step execution as ``dlq show`` lists it."""

    attempt_id: int | None
    step_index: int
    agent: str
    session_id: str | None
    continued: bool
    result_read: bool
    is_error: bool
    subtype: str | None
    cost_usd: float | None
    input_tokens: int
    output_tokens: int
    turns: int
    model: str | None


def runs_of_item(conn: sqlite3.Connection, item_index: int) -> list[AgentRunRecord]:
    """The item's agent step executions, oldest first."""
    if not has_ledger(conn):
        return []
    rows = conn.execute(
        "SELECT attempt_id, step_index, agent, session_id, continued, result_read, is_error,"
        " subtype, cost_usd, input_tokens, output_tokens, turns, model FROM agent_runs"
        " WHERE item_idx = ? ORDER BY id",
        (item_index,),
    ).fetchall()
    return [
        AgentRunRecord(
            attempt_id=row[0],
            step_index=row[1],
            agent=row[2],
            session_id=row[3],
            continued=bool(row[4]),
            result_read=bool(row[5]),
            is_error=bool(row[6]),
            subtype=row[7],
            cost_usd=row[8],
            input_tokens=row[9],
            output_tokens=row[10],
            turns=row[11],
            model=row[12],
        )
        for row in rows
    ]
