"""How an attempt goes on after a run of it was lost with its worker (the Dask executor).

Why: the template steps an attempt finished are recorded while it runs (``StepDone``),
and so are the sessions its agents name (``SessionStarted``). After a crash of the
coordinator, a resume continues the attempt after them (``store.continuation``, from the
database). A run lost with its Dask worker is the same case within one run of the job:
the executor runs the attempt again at once, and that run goes on from the progress the
lost one sent, so its finished steps do not run again and its agent session is resumed.
The rule is ``store.continuation``'s, applied to the progress as it arrived instead of
to the rows it became.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container, Mapping, Sequence

from mapwise.domain.records import AttemptTask, Continuation, Progress, SessionStarted


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
    start = task.resume.start_at if task.resume else 0
    carried = dict(task.resume.captures) if task.resume else {}
    sessions = dict(task.sessions)
    spent = 0.0
    for note in progress:
        if isinstance(note, SessionStarted):
            sessions[note.step_index] = note.session_id
            continue
        record = note.record
        if record.agent is not None and record.agent.cost_usd is not None:
            spent += record.agent.cost_usd
        if record.step_index != start or not record.ok or record.on_failure or record.part:
            continue
        name = captures.get(start)
        if name is not None:
            carried[name] = record.captured or ""
        start += 1
    session = sessions.get(start) if start in agents else None
    workspace = task.workspace
    if workspace is not None and start > (task.resume.start_at if task.resume else 0):
        workspace = dataclasses.replace(workspace, start=None)
    budget = None if task.budget_usd is None else task.budget_usd - spent
    return dataclasses.replace(
        task,
        resume=Continuation(start_at=start, captures=carried, session=session),
        sessions=sessions,
        budget_usd=budget,
        workspace=workspace,
    )
