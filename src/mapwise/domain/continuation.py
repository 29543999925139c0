"""How an attempt goes on after a run of it was lost with its worker (the Dask executor).

Why: the template steps an attempt finished are recorded while it runs (``StepDone``),
and so are the sessions its agents name (``SessionStarted``). After a crash of the
coordinator, a resume continues the attempt after them (``store.continuation``, from the
database). A run lost with its Dask worker is the same case within one run of the job:
the executor runs the attempt again at once, and that run goes on from the progress the
lost one sent, so its finished steps do not run again and its agent session is resumed.
Both apply one rule, ``carried_past``: the store to the rows the progress became, this
module to the progress as it arrived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Iterable, Mapping, Sequence

from mapwise.domain.records import AttemptTask, Continuation, Progress, SessionStarted


def carried_past(
    start: int,
    carried: Mapping[str, str],
    finished: Iterable[tuple[int, str | None]],
    captures: Mapping[int, str],
) -> tuple[int, dict[str, str]]:
    """Where an attempt that started at ``start`` goes on, and the captures it carries.

    ``finished`` holds the template steps that succeeded, as (index, captured value), in
    step order; ``captures`` maps a template step to its capture's name. The attempt goes
    on at the first step from ``start`` that is not among them.
    """
    values = dict(carried)
    for index, captured in finished:
        if index != start:
            break
        name = captures.get(index)
        if name is not None:
            values[name] = captured or ""
        start += 1
    return start, values


def continued(
    task: AttemptTask,
    progress: Sequence[Progress],
    *,
    captures: Mapping[int, str],
    agents: Container[int],
) -> AttemptTask:
    """``task`` as its next run continues it, after runs that sent ``progress``.

    ``progress`` is what every run of ``task`` sent so far, in order; ``captures`` maps a
    template step to its capture's name; ``agents`` holds the agent steps. The next run
    starts at the first template step that did not succeed, with the captures of the
    steps before it, and resumes the session of that step when it is an agent step (an
    agent whose session never started starts it anew under the same id). Its budget is
    what the item had left less what the finished agent steps cost, and in worktree mode
    a run that goes on from a finished step keeps the worktree as the lost run left it.
    """
    first = task.resume.start_at if task.resume else 0
    sessions = dict(task.sessions)
    finished: list[tuple[int, str | None]] = []
    spent = 0.0
    for note in progress:
        if isinstance(note, SessionStarted):
            sessions[note.step_index] = note.session_id
            continue
        record = note.record
        if record.agent is not None and record.agent.cost_usd is not None:
            spent += record.agent.cost_usd
        if record.ok and not record.on_failure and not record.part:
            finished.append((record.step_index, record.captured))
    before = task.resume.captures if task.resume else {}
    start, carried = carried_past(first, before, finished, captures)
    session = sessions.get(start) if start in agents else None
    workspace = task.workspace
    if workspace is not None and start > first:
        workspace = dataclasses.replace(workspace, start=None)
    budget = None if task.budget_usd is None else task.budget_usd - spent
    return dataclasses.replace(
        task,
        resume=Continuation(start_at=start, captures=carried, session=session),
        sessions=sessions,
        budget_usd=budget,
        workspace=workspace,
    )
