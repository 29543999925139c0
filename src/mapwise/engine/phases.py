"""The setup and reduce phases: steps run by the coordinator, each recorded as it ends.

A resume starts each phase at its first step that has not succeeded, with the captures
of the earlier steps restored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from mapwise.domain.records import StepRecord, StepsOutcome
from mapwise.domain.states import ItemStatus, Phase, StepStatus
from mapwise.engine.context import JobContext
from mapwise.engine.events import EventBus, Output, PhaseStarted, StepFinished
from mapwise.engine.workspaces import commit_job_worktree
from mapwise.executors.logsink import LogSink
from mapwise.executors.orphans import clear_note, make_note, write_note
from mapwise.executors.steps import StepEnvironment, run_steps
from mapwise.interpolate import Scope, find_placeholders
from mapwise.workflow.model import Step

COORDINATOR_SLOT = "coordinator"  # the slot note of setup and reduce commands


def first_unfinished(ctx: JobContext, phase: Phase) -> int:
    """Index of the first step of ``phase`` that has not succeeded."""
    done = ctx.store.phase_steps(phase)
    index = 0
    while index in done and done[index][0] is StepStatus.SUCCEEDED:
        index += 1
    return index


class _EchoingLogSink(LogSink):
    """A phase log that also publishes the steps' standard output as ``Output`` events."""

    def __init__(self, path: Path, bus: EventBus, phase: Phase) -> None:
        super().__init__(path)
        self._bus = bus
        self._phase = phase

    def write(self, stream: str, data: bytes) -> None:
        super().write(stream, data)
        if stream == "stdout" and data:
            self._bus.publish(Output(self._phase, data))


def _run_phase(
    ctx: JobContext, phase: Phase, steps: tuple[Step, ...], scope: Scope, deadline: float | None
) -> StepsOutcome:
    start_at = first_unfinished(ctx, phase)
    ctx.bus.publish(PhaseStarted(phase, len(steps)))
    senv = StepEnvironment(
        base_dir=ctx.base_dir,
        env=ctx.base_env,
        claude_command=ctx.claude_command,
        codex_command=ctx.codex_command,
        kill_grace=ctx.kill_grace,
        deadline=deadline,
    )
    path = ctx.paths.logs / phase.value / f"run-{ctx.run_no}.log"
    log = _EchoingLogSink(path, ctx.bus, phase) if phase is Phase.REDUCE else LogSink(path)

    def persist(
        index: int, record: StepRecord, records: list[StepRecord], captures: dict[str, str]
    ) -> None:
        path = log.path_if_written
        stamped = [_with_log(r, path) for r in records]
        if ctx.workspace is not None and record.ok:
            # the job worktree is clean at every step boundary: merges need it clean, and
            # a resume may then throw away what a step cut short left
            commit_job_worktree(ctx.workspace, f"mapwise: {phase.value} step {index + 1}")
        ctx.store.record_phase_step(
            phase,
            index,
            run_no=ctx.run_no,
            succeeded=record.ok,
            records=stamped,
            captures=captures if record.ok else {},
        )
        ctx.bus.publish(StepFinished(phase, index, stamped[0]))

    def note(pgid: int) -> None:
        write_note(ctx.paths.slots, make_note(COORDINATOR_SLOT, pgid))

    try:
        return run_steps(
            steps,
            scope,
            senv,
            log=log,
            cancel=ctx.stop.requested,
            start_at=start_at,
            on_step_done=persist,
            on_start=note,
        )
    finally:
        log.close()
        clear_note(ctx.paths.slots, COORDINATOR_SLOT)


def _with_log(record: StepRecord, path: Path | None) -> StepRecord:
    return replace(record, log_path=str(path) if path else None)


def run_setup(ctx: JobContext) -> StepsOutcome:
    """Run setup from its first unfinished step; captures go into the job's state."""
    setup = ctx.workflow.setup
    scope = Scope(job_id=ctx.job_id, env=ctx.workflow.env, captures=ctx.store.job().captures)
    deadline = None if setup.timeout is None else time.monotonic() + setup.timeout
    return _run_phase(ctx, Phase.SETUP, setup.commands, scope, deadline)


def _result_rows(ctx: JobContext) -> Iterator[dict[str, object]]:
    for item in ctx.store.items():
        if item.status not in (ItemStatus.SUCCEEDED, ItemStatus.DLQ):
            continue
        yield {
            "item_id": item.item_id,
            "item_index": item.index,
            "item": item.value,
            "status": "succeeded" if item.status is ItemStatus.SUCCEEDED else "failed",
            "attempts": item.attempts,
            "duration_seconds": round(item.duration, 6),
            "captures": (item.result or {}).get("captures", {}),
            "exit_code": item.exit_code,
            "error": item.last_error,
        }


def write_results_file(ctx: JobContext) -> Path:
    """Write ``${map.results_file}``: a JSON array of every finished item, streamed."""
    ctx.paths.work.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = ctx.paths.work / "map-results.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("[")
        for number, row in enumerate(_result_rows(ctx)):
            handle.write(",\n" if number else "\n")
            handle.write(json.dumps(row, ensure_ascii=False))
        handle.write("\n]\n")
    os.replace(tmp, path)
    return path


def _uses_results(steps: tuple[Step, ...]) -> bool:
    """Whether any reduce step refers to ``${map.results}`` (the whole array inline)."""
    texts = (text for step in steps for text in step.templates())
    return any(p.name == "map.results" for text in texts for p in find_placeholders(text))


def run_reduce(ctx: JobContext) -> StepsOutcome:
    """Run reduce from its first unfinished step, with the ``${map.*}`` variables."""
    steps = ctx.workflow.reduce
    counts = ctx.store.item_counts()
    results_file = write_results_file(ctx)
    map_vars = {
        "total": str(sum(counts.values())),
        "successful": str(counts[ItemStatus.SUCCEEDED]),
        "failed": str(counts[ItemStatus.DLQ]),
        "results_file": str(results_file),
    }
    if _uses_results(steps):
        map_vars["results"] = results_file.read_text(encoding="utf-8").strip()
    scope = Scope(
        job_id=ctx.job_id,
        env=ctx.workflow.env,
        captures=ctx.store.job().captures,
        map_vars=map_vars,
    )
    return _run_phase(ctx, Phase.REDUCE, steps, scope, None)
