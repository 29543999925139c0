"""Running a list of steps (setup, one item's agent template, reduce) for real.

Used by the coordinator for setup and reduce, and by a pool worker for each attempt of an
item. It turns each step into a command with the interpolation module (item data bound as
data, never as shell code), runs it in its own process group, captures outputs, and runs
``on_failure`` steps when a step fails. ``on_failure`` steps are clean-up: the step that
failed still counts as failed, so an item is never reported done when its work was not.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mapwise.domain.records import StepRecord, StepsOutcome
from mapwise.domain.states import ErrorKind
from mapwise.errors import InterpolationError
from mapwise.executors.agent_steps import AgentSessions, record_of, run_agent
from mapwise.executors.captures import STEP_OUTPUT, STEP_STDERR, captured, mentions_step_output
from mapwise.executors.logsink import LogSink
from mapwise.executors.process import CommandResult, CommandSpec, run_command
from mapwise.executors.results import command_error_kind
from mapwise.interpolate import Scope, bind_shell, render_plain
from mapwise.workflow.model import Step

LABEL_LIMIT = 120

# (index, record, records with its on_failure steps, captures so far) -> reported?
StepDoneHook = Callable[[int, StepRecord, list[StepRecord], dict[str, str]], bool | None]


@dataclass(frozen=True)
class StepEnvironment:
    """Where and how the steps of one list run."""

    base_dir: Path  # the workflow file's folder; relative working_dir is resolved from it
    env: Mapping[str, str]  # the full environment: os.environ, workflow env, MAPWISE_*
    claude_command: tuple[str, ...]  # the agent CLI (MAPWISE_CLAUDE, else "claude")
    kill_grace: float = 5.0
    deadline: float | None = None  # time.monotonic() by which the whole list must end
    head: Callable[[], str] | None = None  # worktree mode: the worktree's HEAD commit
    codex_command: tuple[str, ...] = ("codex",)  # MAPWISE_CODEX, else "codex"
    keep_stdout: bool = False  # every step's stdout is kept: the list reads ${shell.output}
    # the attempt's agent sessions and budget (setup and reduce: a fresh one per list)
    sessions: AgentSessions = dataclasses.field(default_factory=AgentSessions)


def label_of(step: Step) -> str:
    """A one-line label of a step for records and progress, shortened."""
    text = " ".join(step.describe().split())
    return text if len(text) <= LABEL_LIMIT else text[: LABEL_LIMIT - 1] + "…"


def _timeout(step: Step, senv: StepEnvironment) -> float | None:
    """The step's own timeout, cut short by the list's deadline (the item timeout)."""
    limits = []
    if step.timeout is not None:
        limits.append(step.timeout)
    if senv.deadline is not None:
        limits.append(max(senv.deadline - time.monotonic(), 0.001))
    return min(limits) if limits else None


def _command_for(step: Step, scope: Scope, senv: StepEnvironment) -> CommandSpec:
    """Build the argv and environment of a shell or claude step (raises InterpolationError)."""
    step_env = _step_env(step, scope, senv)
    cwd = senv.base_dir
    if step.working_dir is not None:
        cwd = senv.base_dir / render_plain(step.working_dir, scope)
    if step.shell is not None:
        bound = bind_shell(step.shell, scope)
        argv: tuple[str, ...] = ("/bin/sh", "-c", bound.script)
        env = {**senv.env, **step_env, **bound.env}
    else:  # an agent step: its argv is made by ``agent_steps`` for each run
        argv = ()
        env = {**senv.env, **step_env}
    return CommandSpec(
        argv=argv,
        env=env,
        cwd=cwd,
        timeout=_timeout(step, senv),
        capture_stdout=step.capture is not None or senv.keep_stdout,
    )


def _step_env(step: Step, scope: Scope, senv: StepEnvironment) -> dict[str, str]:
    """A step's own ``env:``, each value read as the workflow's are (``envexpand``):
    ``${NAME}`` from the step's earlier entries, the workflow env and the process
    environment, besides the usual variables. Values are substituted as text, never run."""
    step_env: dict[str, str] = {}
    for name, value in step.env.items():
        seen = dataclasses.replace(scope, env={**senv.env, **scope.env, **step_env})
        step_env[name] = render_plain(value, seen)
    return step_env


def _write_file(step: Step, scope: Scope, senv: StepEnvironment) -> str | None:
    """Do a ``write_file`` step in-process; return an error message or None."""
    assert step.write_file is not None
    target = senv.base_dir
    if step.working_dir is not None:
        target = target / render_plain(step.working_dir, scope)
    target = target / render_plain(step.write_file.path, scope)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_plain(step.write_file.content, scope), encoding="utf-8")
    except OSError as exc:
        return f"cannot write {target}: {exc.strerror or exc}"
    return None


@dataclass
class _Run:
    """The mutable progress of one list of steps while it runs."""

    scope: Scope
    records: list[StepRecord]
    captures: dict[str, str]


def _failure_summary(index: int, record: StepRecord) -> str:
    """One line for tables: what failed and the last line of its stderr."""
    kind = record.error_kind
    if kind is ErrorKind.EXIT_CODE:
        what = f"step {index + 1} exited {record.exit_code}"
    elif kind is ErrorKind.SIGNAL:
        what = f"step {index + 1} killed by signal {record.signal}"
    elif kind is ErrorKind.TIMEOUT:
        what = f"step {index + 1} timed out"
    elif kind is ErrorKind.INTERRUPTED:
        what = f"step {index + 1} interrupted"
    elif kind is ErrorKind.AGENT_ERROR:
        what = f"step {index + 1} agent error"
    else:
        what = f"step {index + 1} failed ({kind.value if kind else 'unknown'})"
    lines = [line for line in record.stderr_tail.splitlines() if line.strip()]
    return f"{what}: {lines[-1].strip()}" if lines else what


def run_one_step(
    step: Step,
    index: int,
    scope: Scope,
    senv: StepEnvironment,
    *,
    log: LogSink | None,
    cancel: threading.Event | None,
    on_failure: bool = False,
    on_start: Callable[[int], None] | None = None,
) -> tuple[StepRecord, str | None]:
    """Run one step; return its record and its captured stdout (when it captures)."""
    label = label_of(step)
    if log is not None:
        log.header(f"=== {'on_failure ' if on_failure else ''}step {index + 1}: {label}")
    started, clock = time.time(), time.monotonic()
    try:
        if step.write_file is not None:
            error = _write_file(step, scope, senv)
            ended = time.time()
            return StepRecord(
                step_index=index,
                label=label,
                started_at=started,
                ended_at=ended,
                duration=time.monotonic() - clock,
                exit_code=0 if error is None else None,
                error_kind=None if error is None else ErrorKind.SPAWN_ERROR,
                stderr_tail=error or "",
                on_failure=on_failure,
            ), None
        spec = _command_for(step, scope, senv)
    except InterpolationError as exc:
        return _unresolved(step, index, exc, started, clock, on_failure), None
    if step.agent is not None:
        try:
            return _run_agent_step(
                step, index, spec, scope, senv, log, cancel, on_start, on_failure
            )
        except InterpolationError as exc:
            return _unresolved(step, index, exc, started, clock, on_failure), None
    log_before = _log_state(log)
    result = run_command(
        spec, log=log, cancel=cancel, kill_grace=senv.kill_grace, on_start=on_start
    )
    return _record(step, index, result, log, log_before, on_failure), result.stdout


def _unresolved(
    step: Step,
    index: int,
    error: InterpolationError,
    started: float,
    clock: float,
    on_failure: bool,
) -> StepRecord:
    """A step that cannot run: a variable could not be resolved for this item."""
    return StepRecord(
        step_index=index,
        label=label_of(step),
        started_at=started,
        ended_at=time.time(),
        duration=time.monotonic() - clock,
        error_kind=ErrorKind.INTERPOLATION,
        stderr_tail=str(error),
        on_failure=on_failure,
    )


def _run_agent_step(
    step: Step,
    index: int,
    spec: CommandSpec,
    scope: Scope,
    senv: StepEnvironment,
    log: LogSink | None,
    cancel: threading.Event | None,
    on_start: Callable[[int], None] | None,
    on_failure: bool,
) -> tuple[StepRecord, str | None]:
    """An agent step: its record carries the agent's verdict and usage; its capture is
    the agent's result text."""
    cli = senv.claude_command if step.agent == "claude" else senv.codex_command
    log_before = _log_state(log)
    clock, started = time.monotonic(), time.time()
    run = run_agent(
        step,
        index,
        spec,
        scope,
        senv.sessions,
        cli,
        log=log,
        cancel=cancel,
        kill_grace=senv.kill_grace,
        on_start=on_start,
    )
    if isinstance(run, str):  # it may not run: nothing started, nothing spent
        return StepRecord(
            step_index=index,
            label=label_of(step),
            started_at=started,
            ended_at=time.time(),
            duration=time.monotonic() - clock,
            error_kind=ErrorKind.AGENT_ERROR,
            stderr_tail=run,
            on_failure=on_failure,
        ), None
    base = _record(step, index, run.result, log, log_before, on_failure)
    # a failed agent step's words (its error) are what ${shell.output} shows its handlers
    said = run.reading.text if run.reading.text is not None else run.reading.detail or None
    return record_of(base, run), said


def _record(
    step: Step,
    index: int,
    result: CommandResult,
    log: LogSink | None,
    log_before: tuple[str | None, int],
    on_failure: bool,
) -> StepRecord:
    """A command's record: how it ended, its real duration, the end of its stderr."""
    label = label_of(step)
    tail = result.stderr_tail
    if result.spawn_error:
        tail = (tail + "\n" + result.spawn_error).strip()
    tail = _with_note(tail, _log_note(log, log_before))
    return StepRecord(
        step_index=index,
        label=label,
        started_at=result.started_at,
        ended_at=result.ended_at,
        duration=result.duration,
        exit_code=result.exit_code,
        signal=result.signal,
        timed_out=result.timed_out,
        error_kind=command_error_kind(result),
        stderr_tail=tail,
        log_path=None,
        on_failure=on_failure,
    )


def run_steps(
    steps: tuple[Step, ...],
    scope: Scope,
    senv: StepEnvironment,
    *,
    log: LogSink | None,
    cancel: threading.Event | None = None,
    start_at: int = 0,
    carried: Mapping[str, str] | None = None,
    on_step_done: StepDoneHook | None = None,
    on_start: Callable[[int], None] | None = None,
) -> StepsOutcome:
    """Run ``steps`` from ``start_at`` until one fails; captures flow into later steps.

    ``carried`` are the captures of the steps before ``start_at`` (a continued attempt).
    ``on_step_done(index, record, records_with_on_failure, captures)`` lets each step be
    persisted as it ends, so that a resume starts at the first unfinished one; when it
    returns True the step is on its way to the store, and its record says ``reported``.
    """
    clock = time.monotonic()
    run = _Run(scope=scope, records=[], captures=dict(carried or {}))
    if carried:
        run.scope = dataclasses.replace(scope, captures={**scope.captures, **carried})
    outputs = mentions_step_output(steps)
    if outputs:
        senv = dataclasses.replace(senv, keep_stdout=True)
        empty = {STEP_OUTPUT: "", STEP_STDERR: ""}
        run.scope = dataclasses.replace(run.scope, captures={**empty, **run.scope.captures})
    for index in range(start_at, len(steps)):
        step = steps[index]
        before = senv.head() if step.commit_required and senv.head is not None else None
        record, stdout = run_one_step(
            step, index, run.scope, senv, log=log, cancel=cancel, on_start=on_start
        )
        if before is not None and record.ok and senv.head is not None and senv.head() == before:
            record = _no_commit(record)
        if record.ok and step.capture is not None:
            value, why = captured(step.capture_format, stdout or "", record.ok)
            if value is None:
                record = _capture_failed(record, why or "")
            else:
                record = dataclasses.replace(record, captured=value)
                run.captures[step.capture] = value
                run.scope = dataclasses.replace(
                    run.scope, captures={**run.scope.captures, step.capture: value}
                )
        if outputs:
            run.scope = _with_step_output(run.scope, stdout, record)
        step_records = [record]
        if not record.ok and step.on_failure and record.error_kind is not ErrorKind.INTERRUPTED:
            step_records += _run_on_failure(step, run.scope, senv, log=log, cancel=cancel)
        if on_step_done is not None and on_step_done(
            index, record, step_records, dict(run.captures)
        ):
            step_records[0] = dataclasses.replace(record, reported=True)
        run.records.extend(step_records)
        if not record.ok:
            return _failed(run, index, record, log, time.monotonic() - clock)
    return StepsOutcome(
        steps=tuple(run.records),
        captures=run.captures,
        stderr_tail=_log_note(log) or "",
        log_path=_log_path(log),
        duration=time.monotonic() - clock,
    )


def _with_step_output(scope: Scope, stdout: str | None, record: StepRecord) -> Scope:
    """``${shell.output}`` and ``${shell.stderr}`` of the step that just ran."""
    outputs = {STEP_OUTPUT: (stdout or "").rstrip("\n"), STEP_STDERR: record.stderr_tail}
    return dataclasses.replace(scope, captures={**scope.captures, **outputs})


def _capture_failed(record: StepRecord, why: str) -> StepRecord:
    """A step whose output does not fit its ``capture_format`` has failed (as in prodigy)."""
    tail = f"{record.stderr_tail}\n{why}" if record.stderr_tail else why
    return dataclasses.replace(record, error_kind=ErrorKind.CAPTURE, stderr_tail=tail)


def _no_commit(record: StepRecord) -> StepRecord:
    """A step with ``commit_required`` that succeeded without committing has failed."""
    return dataclasses.replace(
        record,
        error_kind=ErrorKind.NO_COMMIT,
        stderr_tail=(record.stderr_tail + "\n" if record.stderr_tail else "")
        + "the step made no commit (commit_required: true)",
    )


def _run_on_failure(
    step: Step,
    scope: Scope,
    senv: StepEnvironment,
    *,
    log: LogSink | None,
    cancel: threading.Event | None,
) -> list[StepRecord]:
    """Run a failed step's on_failure steps, stopping at the first that fails.

    Clean-up must get to run even when the item's own deadline is what failed the step,
    so these steps have only their own ``timeout``. A handler that fails runs its own
    ``on_failure`` steps in turn.
    """
    own_time = dataclasses.replace(
        senv, deadline=None, sessions=AgentSessions(budget_usd=senv.sessions.budget_usd)
    )
    records: list[StepRecord] = []
    for index, handler in enumerate(step.on_failure):
        record, _ = run_one_step(
            handler, index, scope, own_time, log=log, cancel=cancel, on_failure=True
        )
        records.append(record)
        if not record.ok:
            if handler.on_failure and record.error_kind is not ErrorKind.INTERRUPTED:
                records += _run_on_failure(handler, scope, own_time, log=log, cancel=cancel)
            break
    return records


def _log_path(log: LogSink | None) -> str | None:
    if log is None:
        return None
    path = log.path_if_written
    return str(path) if path is not None else None


def _log_state(log: LogSink | None) -> tuple[str | None, int]:
    """The log's error and dropped bytes so far, to tell what one step lost."""
    return (None, 0) if log is None else (log.write_error, log.bytes_dropped)


def _log_note(log: LogSink | None, before: tuple[str | None, int] | None = None) -> str | None:
    """``log not written: <error>`` once the log failed; None if it did not.

    With ``before`` (the log's state when a step started): None also when the log had
    failed before that step and the step lost no output to it.
    """
    if log is None or log.write_error is None:
        return None
    if before is not None and before[0] is not None and log.bytes_dropped == before[1]:
        return None
    return f"log not written: {log.write_error}"


def _with_note(tail: str, note: str | None) -> str:
    """``tail`` with ``note`` as its first line (its last line stays the command's own)."""
    if note is None or note in tail:
        return tail
    return f"{note}\n{tail}" if tail else note


def _failed(
    run: _Run, index: int, record: StepRecord, log: LogSink | None, duration: float
) -> StepsOutcome:
    return StepsOutcome(
        steps=tuple(run.records),
        captures=run.captures,
        error_kind=record.error_kind,
        failed_step=index,
        exit_code=record.exit_code,
        signal=record.signal,
        last_error=_failure_summary(index, record),
        stderr_tail=_with_note(record.stderr_tail, _log_note(log)),
        log_path=_log_path(log),
        duration=duration,
    )
