"""One attempt of one item: the agent template run for real, wherever the pool puts it.

This function runs inside a pool slot (a thread of the local pool, or a worker of a
distributed engine), so it takes and returns plain picklable values and writes nothing
to the job's database: the coordinator records what it returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mapwise.domain.records import (
    AttemptResult,
    AttemptTask,
    Progress,
    StepDone,
    StepRecord,
    StepsOutcome,
)
from mapwise.domain.states import ErrorKind
from mapwise.errors import MapwiseError
from mapwise.executors import worktree
from mapwise.executors.agent_steps import AgentSessions
from mapwise.executors.logsink import LogSink, make_private_dirs
from mapwise.executors.orphans import close_slot_notes as close_slot_notes  # for the runner
from mapwise.executors.orphans import make_note, slot_board
from mapwise.executors.results import attempt_failed
from mapwise.executors.steps import StepEnvironment, run_steps
from mapwise.interpolate import Scope
from mapwise.workflow.model import Step

_HOST = socket.gethostname()


@dataclass(frozen=True)
class AttemptConfig:
    """What every attempt of a job shares: the template and where it runs."""

    steps: tuple[Step, ...]
    base_dir: Path
    base_env: Mapping[str, str]  # os.environ, the workflow env and MAPWISE_JOB_ID
    workflow_env: Mapping[str, str]
    claude_command: tuple[str, ...]
    item_timeout: float | None
    kill_grace: float
    slots_dir: Path | None  # where a slot notes the process group it runs (orphan cleanup)
    log_max_bytes: int = 10 * 1024 * 1024
    workspace_setup: tuple[Step, ...] = ()  # worktree mode: once in each new worktree
    codex_command: tuple[str, ...] = ("codex",)


def _write_private(path: str, text: str) -> None:
    """Write ``path`` with mode 0600, creating 0700 parents the first time.

    Once per item: plain system calls on a string path, because pathlib and a text
    wrapper cost more than the write itself when the commands are short.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        make_private_dirs(Path(path).parent)
        fd = os.open(path, flags, 0o600)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def _item_text(item: object) -> str:
    return json.dumps(item, ensure_ascii=False)


class _SlotNote:
    """Notes which process group a slot runs, so a resume can kill it if we die."""

    def __init__(self, config: AttemptConfig, task: AttemptTask) -> None:
        self.board = None if config.slots_dir is None else slot_board(config.slots_dir)
        self.task = task

    def started(self, pgid: int) -> None:
        if self.board is not None:
            task = self.task
            note = make_note(
                str(task.slot), pgid, attempt_id=task.attempt_id, item_index=task.item_index
            )
            self.board.write(note)

    def clear(self) -> None:
        if self.board is not None:
            self.board.clear(str(self.task.slot))


def _scope(task: AttemptTask, config: AttemptConfig) -> Scope:
    return Scope(
        job_id=task.job_id,
        env=config.workflow_env,
        captures=task.captures,
        item=task.item,
        item_id=task.item_id,
        item_index=task.item_index,
        attempt=task.attempt_no,
    )


def _workspace_failed(error: MapwiseError, steps: tuple[StepRecord, ...] = ()) -> StepsOutcome:
    """An attempt whose worktree could not be made or committed: git's words, in full."""
    text = str(error)
    return StepsOutcome(
        steps=steps,
        captures={},
        error_kind=ErrorKind.WORKSPACE,
        last_error=f"worktree: {text.splitlines()[0] if text else error!r}",
        stderr_tail=text[-4000:],
    )


def _labelled(records: tuple[StepRecord, ...], prefix: str) -> tuple[StepRecord, ...]:
    return tuple(
        dataclasses.replace(r, label=f"{prefix}{r.label}", part="workspace.setup") for r in records
    )


@dataclass
class _Workspace:
    """The worktree facts of one attempt, filled in as it goes."""

    start_commit: str | None = None
    commit: str | None = None


def _in_worktree(
    task: AttemptTask,
    config: AttemptConfig,
    senv: StepEnvironment,
    run: Callable[[tuple[Step, ...], StepEnvironment], StepsOutcome],
    facts: _Workspace,
) -> StepsOutcome:
    """Prepare the item's worktree, run the template there, commit what it left."""
    ws = task.workspace
    assert ws is not None
    try:
        prepared = worktree.prepare(ws)
    except MapwiseError as error:
        return _workspace_failed(error)
    facts.start_commit = prepared.start_commit
    env = {**senv.env, "MAPWISE_WORKTREE": str(prepared.path), "MAPWISE_BRANCH": ws.branch}
    senv = dataclasses.replace(
        senv, base_dir=prepared.base_dir, env=env, head=lambda: worktree.head(ws)
    )
    setup: tuple[StepRecord, ...] = ()
    if prepared.fresh and config.workspace_setup:
        done = run(config.workspace_setup, dataclasses.replace(senv, sessions=AgentSessions()))
        setup = _labelled(done.steps, "workspace.setup: ")
        if not done.ok:
            return dataclasses.replace(done, steps=setup, failed_step=None)
    if prepared.fresh:
        worktree.mark_ready(ws)
    outcome = run(config.steps, senv)
    outcome = dataclasses.replace(outcome, steps=setup + outcome.steps)
    if not outcome.ok:
        return outcome
    try:
        facts.commit = worktree.finish(ws, task.item_id)
    except MapwiseError as error:
        return _workspace_failed(error, outcome.steps)
    return outcome


def _no_room(task: AttemptTask, started: float, error: OSError) -> AttemptResult:
    """mapwise could not write its own files of the attempt (the item's file, a slot note,
    a log folder): the disk is full, which is no fault of the item. The attempt ends
    interrupted, so it does not use up a retry; the job stops when its own state cannot
    be written either, and a resume runs the item again."""
    message = f"no room for mapwise's own files of the attempt: {error.strerror or error}"
    return attempt_failed(
        task, ErrorKind.INTERRUPTED, message, interrupted=True, host=_HOST, started_at=started
    )


def run_attempt(
    task: AttemptTask,
    config: AttemptConfig,
    cancel: threading.Event | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> AttemptResult:
    """Run the agent template for ``task.item`` and report how it went.

    ``progress`` takes each template step that succeeded before the last (and each
    session an agent names while running), for the coordinator to record at once: an
    attempt stopped later continues after them. Without it (an executor that cannot send
    them), a stopped attempt starts over.
    """
    started, clock = time.time(), time.monotonic()
    try:
        return _run_attempt(task, config, cancel, started, clock, progress)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return _no_room(task, started, error)


def _run_attempt(
    task: AttemptTask,
    config: AttemptConfig,
    cancel: threading.Event | None,
    started: float,
    clock: float,
    progress: Callable[[Progress], None] | None,
) -> AttemptResult:
    _write_private(task.item_file, _item_text(task.item))
    env = {
        **config.base_env,
        "MAPWISE_ITEM_ID": task.item_id,
        "MAPWISE_ITEM_INDEX": str(task.item_index),
        "MAPWISE_ATTEMPT": str(task.attempt_no),
        "MAPWISE_ITEM_FILE": task.item_file,
    }
    scope = _scope(task, config)
    deadline = None if config.item_timeout is None else clock + config.item_timeout
    senv = StepEnvironment(
        base_dir=config.base_dir,
        env=env,
        claude_command=config.claude_command,
        kill_grace=config.kill_grace,
        deadline=deadline,
        codex_command=config.codex_command,
        sessions=AgentSessions(
            planned=dict(task.sessions),
            resume=task.resume,
            budget_usd=task.budget_usd,
            attempt_id=task.attempt_id,
            report=progress,
        ),
    )
    log = LogSink(task.log_path, max_bytes=config.log_max_bytes)
    note = _SlotNote(config, task)
    facts = _Workspace()

    resume = task.resume
    last = len(config.steps) - 1

    def report(index: int, record: StepRecord, *_: object) -> bool:
        """Send a template step that succeeded and is not the last one (the last one's
        end is the attempt's end, recorded with it)."""
        if progress is None or not record.ok or index >= last:
            return False
        progress(StepDone(task.attempt_id, task.item_index, record))
        return True

    def run(steps: tuple[Step, ...], where: StepEnvironment) -> StepsOutcome:
        if steps is not config.steps:  # the worktree's setup steps
            return run_steps(steps, scope, where, log=log, cancel=cancel, on_start=note.started)
        return run_steps(
            steps,
            scope,
            where,
            log=log,
            cancel=cancel,
            on_start=note.started,
            start_at=resume.start_at if resume else 0,
            carried=resume.captures if resume else None,
            on_step_done=report,
        )

    try:
        if task.workspace is None:
            outcome = run(config.steps, senv)
        else:
            outcome = _in_worktree(task, config, senv, run, facts)
    finally:
        log.close()
        note.clear()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(task.item_file)
    return AttemptResult(
        attempt_id=task.attempt_id,
        item_index=task.item_index,
        attempt_no=task.attempt_no,
        slot=task.slot,
        host=_HOST,
        started_at=started,
        ended_at=time.time(),
        duration=time.monotonic() - clock,
        outcome=outcome,
        interrupted=outcome.error_kind is ErrorKind.INTERRUPTED,
        commit=facts.commit,
        start_commit=facts.start_commit,
        in_worktree=task.workspace is not None,
    )
