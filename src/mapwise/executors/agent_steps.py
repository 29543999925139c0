"""Running one agent step (``claude:`` or ``codex:``): a session, a result, a cost.

An agent step is a command whose argv comes from ``mapwise.agents`` and whose standard
output is read for the agent's own verdict: a run that exits 0 with ``is_error: true``
failed (error kind ``agent_error``), and a run that printed no result is judged by its
exit status like any command. The session is chosen before the process starts (the
coordinator committed it with the attempt's claim), so a crash can always resume it:
a continued step runs ``--resume SESSION`` with the continue prompt, and when the
session turns out never to have started it starts anew under the same id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from mapwise.agents import claude, codex
from mapwise.agents.call import DEFAULT_CONTINUE_PROMPT, AgentCall, AgentReading
from mapwise.domain.records import Continuation, Progress, SessionStarted, StepRecord
from mapwise.domain.states import ErrorKind
from mapwise.executors.logsink import LogSink
from mapwise.executors.process import CommandResult, CommandSpec, run_command
from mapwise.executors.results import process_fate
from mapwise.interpolate import Scope, render_plain
from mapwise.workflow.model import Step

_BUDGET_EPSILON = 1e-9


@dataclass
class AgentSessions:
    """An attempt's agent sessions and budget, as the steps use them up.

    ``planned`` maps a template step to the session the claim chose for it; ``resume``
    says which step continues its session; ``budget_usd`` is what the item may still
    spend (None: no ``map.max_cost_usd``). ``report`` sends ``SessionStarted`` to the
    coordinator when an agent names its session itself (Codex's thread id).
    """

    planned: dict[int, str] = field(default_factory=dict)
    resume: Continuation | None = None
    budget_usd: float | None = None
    attempt_id: int | None = None
    report: Callable[[Progress], None] | None = None

    def session_for(self, index: int) -> tuple[str | None, bool]:
        """The session of template step ``index`` and whether it continues."""
        resume = self.resume
        if resume is not None and resume.start_at == index and resume.session:
            return resume.session, True
        return self.planned.get(index), False


@dataclass(frozen=True)
class AgentRun:
    """What one agent step did: the command's result and what the agent said."""

    result: CommandResult
    reading: AgentReading
    error_kind: ErrorKind | None
    note: str  # a line for stderr_tail: why the agent step failed, in its own words


def _call(step: Step, scope: Scope, session: str | None, resume: bool) -> AgentCall:
    """The step's options rendered for this item (plain text, never a shell's)."""
    prompt = step.prompt
    assert prompt is not None
    if resume:
        prompt = step.continue_prompt or DEFAULT_CONTINUE_PROMPT
    return AgentCall(
        prompt=render_plain(prompt, scope),
        session=session,
        resume=resume,
        model=render_plain(step.model, scope) if step.model else None,
        max_turns=step.max_turns,
        allowed_tools=step.allowed_tools,
        permission_mode=step.permission_mode,
        append_system_prompt=(
            render_plain(step.append_system_prompt, scope) if step.append_system_prompt else None
        ),
        args=tuple(render_plain(arg, scope) for arg in step.args),
    )


def _watcher(sessions: AgentSessions, index: int) -> Callable[[bytes], None] | None:
    """For Codex: report the thread id as soon as its first event names it."""
    report, attempt = sessions.report, sessions.attempt_id
    if report is None or attempt is None:
        return None
    seen = bytearray()
    done = False

    def watch(data: bytes) -> None:
        nonlocal done
        if done:
            return
        seen.extend(data[:65536])
        newline = seen.find(b"\n")
        if newline < 0 and len(seen) < 65536:
            return
        done = True
        first = seen[: newline if newline >= 0 else len(seen)].decode("utf-8", "replace")
        thread = codex.thread_started(first)
        if thread:  # a report lost costs a resume, never the step
            with contextlib.suppress(Exception):
                report(SessionStarted(attempt, index, thread))

    return watch


def run_agent(
    step: Step,
    index: int,
    spec: CommandSpec,
    scope: Scope,
    sessions: AgentSessions,
    cli: tuple[str, ...],
    *,
    log: LogSink | None,
    cancel: threading.Event | None,
    kill_grace: float,
    on_start: Callable[[int], None] | None,
) -> AgentRun | str:
    """Run the agent step; a string when it may not run at all (its budget is spent)."""
    agent = step.agent
    assert agent is not None
    budget = sessions.budget_usd
    if budget is not None and budget <= _BUDGET_EPSILON and agent == "claude":
        over = f" (${-budget:.4f} over)" if budget < -_BUDGET_EPSILON else ""
        return f"the item's budget (map.max_cost_usd) is spent{over}"
    session, resume = sessions.session_for(index)
    if agent == "claude" and session is None:
        session = str(uuid.uuid4())  # setup and reduce: nothing to continue
    call = _call(step, scope, session, resume)
    if agent == "claude":  # Codex reports no cost: its budget cannot be enforced
        call = dataclasses.replace(call, budget_usd=budget)
    run = _once(agent, call, spec, cli, sessions, index, log, cancel, kill_grace, on_start)
    if resume and run.reading.failed is None and not run.result.interrupted:
        gone = claude.no_session if agent == "claude" else codex.no_session
        if gone(run.result.stderr_tail):
            if log is not None:
                log.header(f"=== step {index + 1}: session {session} not found; starting anew")
            fresh = _call(step, scope, session if agent == "claude" else None, False)
            fresh = dataclasses.replace(fresh, budget_usd=call.budget_usd)
            run = _once(agent, fresh, spec, cli, sessions, index, log, cancel, kill_grace, on_start)
    return run


def _once(
    agent: str,
    call: AgentCall,
    spec: CommandSpec,
    cli: tuple[str, ...],
    sessions: AgentSessions,
    index: int,
    log: LogSink | None,
    cancel: threading.Event | None,
    kill_grace: float,
    on_start: Callable[[int], None] | None,
) -> AgentRun:
    module = claude if agent == "claude" else codex
    spec = dataclasses.replace(
        spec,
        argv=module.argv(cli, call),
        keep_output=True,
        capture_stdout=False,
        watch=_watcher(sessions, index) if agent == "codex" and not call.resume else None,
    )
    result = run_command(spec, log=log, cancel=cancel, kill_grace=kill_grace, on_start=on_start)
    reading = module.read(result.output or "", call)
    kind, note = _verdict(result, reading)
    if sessions.budget_usd is not None:
        sessions.budget_usd -= reading.usage.cost_usd or 0.0
        if kind is None and sessions.budget_usd < -_BUDGET_EPSILON:
            kind = ErrorKind.AGENT_ERROR
            note = "the item spent more than its budget (map.max_cost_usd)"
    return AgentRun(result, reading, kind, note)


def _verdict(result: CommandResult, reading: AgentReading) -> tuple[ErrorKind | None, str]:
    """The step's error kind: the process's fate first, then what the agent said."""
    fate = process_fate(result)
    if fate is not None:
        return fate, ""
    if reading.failed:
        return ErrorKind.AGENT_ERROR, reading.detail
    if result.exit_code != 0:
        return ErrorKind.EXIT_CODE, "" if reading.failed is not None else "no result was read"
    if reading.failed is None:
        return None, "no result was read; exit status 0"
    return None, ""


def record_of(base: StepRecord, run: AgentRun) -> StepRecord:
    """The step's record with the agent's verdict, note and usage."""
    tail = base.stderr_tail
    if run.note and tail and run.error_kind is not ErrorKind.AGENT_ERROR:
        tail = f"{run.note}\n{tail}"  # the command's own last words stay the last line
    elif run.note:
        tail = f"{tail}\n{run.note}".strip() if tail else run.note
    return dataclasses.replace(
        base, error_kind=run.error_kind, stderr_tail=tail, agent=run.reading.usage
    )
