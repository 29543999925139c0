"""Reading what the job report shows, from a job's database opened read-only.

A report may be written while a live process runs the job: every read here is a plain
SELECT on a read-only connection (SQLite's WAL lets it read the last commit while the
runner writes the next), so the report never blocks the run. Bulk reads are one query
per kind of row, because a job may hold millions of attempts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable

from mapwise.domain.states import ItemStatus, JobStatus
from mapwise.report.model import AttemptSpan, ItemRow, ReportData, RunSpan, StepSpan, StepStats
from mapwise.reports import resume_command
from mapwise.store import ledger
from mapwise.store.jobstore import JobStore
from mapwise.store.summary import status_report

ITEMS_SHOWN = 500  # rows of the items table besides the DLQ's
# DLQ rows at most: every DLQ item of any sane job, while a job whose 100,000 items all
# failed still gives a report of a few MB (``mapwise dlq list`` has every one)
DLQ_SHOWN = 20_000
COSTLIEST = 10


def _has_column(store: JobStore, table: str, column: str) -> bool:
    return any(row[1] == column for row in store.conn.execute(f"PRAGMA table_info({table})"))


def _outcome(outcome: str, error_kind: str | None, live: bool) -> str:
    if error_kind == "merge_conflict":
        return "merge_conflict"
    if error_kind == "timeout":
        return "timed_out"
    if outcome == "running":
        return "running" if live else "interrupted"  # left running by a run that died
    if outcome in ("succeeded", "failed", "interrupted"):
        return outcome
    return "failed"


_SHOWN_KINDS = ("timeout", "interrupted", "merge_conflict")


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def read_attempts(
    store: JobStore, runs: list[RunSpan], *, live: bool, now: float
) -> list[AttemptSpan]:
    """Every attempt, as a bar: a running one ends now, or, if its run died, when that
    run ended."""
    run_ends = {run.run_no: run.end for run in runs}
    costs: dict[int, float] = {}
    if ledger.has_ledger(store.conn):
        costs = dict(
            store.conn.execute(
                "SELECT attempt_id, SUM(cost_usd) FROM agent_runs"
                " WHERE attempt_id IS NOT NULL GROUP BY attempt_id"
            ).fetchall()
        )
    updated = store.job_header().updated_at
    spans = []
    for row in store.conn.execute(
        "SELECT a.id, i.item_id, a.attempt_no, a.run_no, a.host, a.slot, a.started_at,"
        " a.ended_at, a.outcome, a.error_kind, a.stderr_tail FROM attempts a"
        " JOIN items i ON i.idx = a.item_idx ORDER BY a.id"
    ):
        attempt_id, item_id, number, run_no, host, slot, start, end, outcome, kind, tail = row
        shown = _outcome(outcome, kind, live)
        if end is None:
            end = now if shown == "running" else run_ends.get(run_no, updated)
        error = None
        if shown not in ("succeeded", "running"):
            # the outcome says timeout, interrupted or conflict itself; other kinds it does not
            said = [kind] if kind and kind not in _SHOWN_KINDS else []
            error = ": ".join([*said, _last_line(tail)] if _last_line(tail) else said) or None
        spans.append(
            AttemptSpan(
                attempt_id=attempt_id,
                item_id=item_id,
                attempt_no=number,
                run_no=run_no,
                host=host or "?",
                slot=slot if slot is not None else 0,
                start=start,
                end=max(end, start),
                outcome=shown,
                error=error,
                cost=costs.get(attempt_id),
            )
        )
    return spans


def read_steps(store: JobStore) -> list[StepSpan]:
    """Every template step of every attempt (handlers and worktree setup left out)."""
    part = " AND part IS NULL" if _has_column(store, "steps", "part") else ""
    return [
        StepSpan(attempt_id, index, label, start, end, kind is None)
        for attempt_id, index, label, start, end, kind in store.conn.execute(
            "SELECT attempt_id, step_index, label, started_at, ended_at, error_kind FROM steps"
            f" WHERE phase = 'map' AND on_failure = 0 AND attempt_id IS NOT NULL{part}"
            " ORDER BY id"
        )
    ]


def step_stats(steps: Iterable[StepSpan]) -> list[StepStats]:
    """Median, p95 and max duration of each template step, over every run of it."""
    by_index: dict[int, tuple[str, list[float]]] = {}
    for step in steps:
        label, durations = by_index.setdefault(step.step_index, (step.label, []))
        durations.append(step.end - step.start)
    stats = []
    for index in sorted(by_index):
        label, durations = by_index[index]
        durations.sort()
        p95 = durations[min(len(durations) - 1, round(0.95 * (len(durations) - 1)))]
        stats.append(
            StepStats(
                index, label, len(durations), statistics.median(durations), p95, durations[-1]
            )
        )
    return stats


def read_runs(store: JobStore, *, live: bool, now: float) -> list[RunSpan]:
    """Each run from its start to its end; a run that died without ending (``kill -9``)
    ends where the next began, or at the job's last update."""
    updated = store.job_header().updated_at
    runs = store.runs()
    spans = []
    for n, run in enumerate(runs):
        end = run.ended_at
        outcome = run.outcome
        if end is None and n + 1 < len(runs):
            end, outcome = runs[n + 1].started_at, "interrupted"
        elif end is None:
            end = now if live else updated
            outcome = "running" if live else "interrupted"
        spans.append(RunSpan(run.run_no, run.started_at, max(end, run.started_at), outcome))
    return spans


def read_cost(store: JobStore) -> tuple[list[tuple[float, float]], list[tuple[str, float]]]:
    """The job's spend over time (cumulative), and its costliest items."""
    if not ledger.has_ledger(store.conn):
        return [], []
    points = []
    total = 0.0
    for ended, usd in store.conn.execute(
        "SELECT ended_at, cost_usd FROM agent_runs WHERE cost_usd IS NOT NULL ORDER BY ended_at"
    ):
        total += usd
        points.append((ended, total))
    costliest = store.conn.execute(
        "SELECT i.item_id, SUM(r.cost_usd) AS usd FROM agent_runs r JOIN items i"
        " ON i.idx = r.item_idx WHERE r.cost_usd IS NOT NULL GROUP BY r.item_idx"
        " ORDER BY usd DESC LIMIT ?",
        (COSTLIEST,),
    ).fetchall()
    return points, [(item_id, usd) for item_id, usd in costliest]


def _costs_of(store: JobStore, indexes: list[int]) -> dict[int, float]:
    """What the agents of these items spent (items with no cost on record are absent):
    only the items the table shows, not every item of a big job."""
    if not indexes or not ledger.has_ledger(store.conn):
        return {}
    costs: dict[int, float] = {}
    for n in range(0, len(indexes), 500):
        chunk = indexes[n : n + 500]
        marks = ", ".join("?" for _ in chunk)
        costs.update(
            store.conn.execute(
                f"SELECT item_idx, SUM(cost_usd) FROM agent_runs WHERE item_idx IN ({marks})"
                " GROUP BY item_idx HAVING SUM(cost_usd) IS NOT NULL",
                chunk,
            ).fetchall()
        )
    return costs


def read_items(store: JobStore) -> tuple[list[ItemRow], int]:
    """Every DLQ item, then the others in frozen order up to ``ITEMS_SHOWN``; and how
    many were left out."""
    branch = "branch" if _has_column(store, "items", "branch") else "NULL"
    columns = f"idx, item_id, status, attempts, duration, last_error, {branch}"
    dlq = store.conn.execute(
        f"SELECT {columns} FROM items WHERE status = 'dlq' ORDER BY idx LIMIT ?", (DLQ_SHOWN,)
    ).fetchall()
    others = store.conn.execute(
        f"SELECT {columns} FROM items WHERE status != 'dlq' ORDER BY idx LIMIT ?",
        (ITEMS_SHOWN,),
    ).fetchall()
    total = store.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    costs = _costs_of(store, [row[0] for row in [*dlq, *others]])
    rows = [
        ItemRow(item_id, _status(status), attempts, duration, costs.get(idx), error, br)
        for idx, item_id, status, attempts, duration, error, br in [*dlq, *others]
    ]
    return rows, total - len(rows)


def _status(stored: str) -> str:
    """The item's status as ``status --items`` shows it."""
    try:
        return ItemStatus(stored).value
    except ValueError:
        return stored


def _next_command(job_id: str, status: str, state_dir: str | None) -> str:
    """What takes a resumable job further: ``resume``, or for a completed job whose
    items are in the DLQ, ``dlq retry`` (a plain resume has nothing to run)."""
    command = resume_command(job_id, state_dir)
    if status == JobStatus.COMPLETED.value:
        return command.replace(" resume ", " dlq retry ", 1)
    return command


def read_report(store: JobStore, *, state_dir: str | None) -> ReportData:
    """Everything the report shows, read from ``store`` now."""
    now = time.time()
    status = status_report(store, with_items=False)
    live = status.job.status == JobStatus.RUNNING.value
    runs = read_runs(store, live=live, now=now)
    attempts = read_attempts(store, runs, live=live, now=now)
    items, left_out = read_items(store)
    points, costliest = read_cost(store)
    return ReportData(
        status=status,
        live=live,
        now=now,
        attempts=tuple(attempts),
        runs=tuple(runs),
        item_durations=tuple(store.finished_durations()),
        steps=tuple(step_stats(read_steps(store))),
        cost_points=tuple(points),
        costliest=tuple(costliest),
        items=tuple(items),
        items_left_out=left_out,
        resume_command=_next_command(status.job.job_id, status.job.status, state_dir)
        if status.job.resumable
        else None,
    )
