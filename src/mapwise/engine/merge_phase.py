"""The ``merge:`` block of a worktree job: prodigy's custom merge workflow.

prodigy runs its ``merge:`` steps in the session's worktree (``current_dir`` of each
step is the worktree's path, in its src/worktree/merge_orchestrator.rs), with
``${merge.worktree}``, ``${merge.source_branch}`` (the worktree's branch),
``${merge.target_branch}`` (the branch prodigy was started on) and ``${merge.session_id}``.
mapwise does the same with its job worktree: the steps run where reduce runs (the
workflow file's folder in the job worktree), once the job has completed, after reduce.

mapwise itself never merges into the user's branches; these steps are the workflow
author's own, explicit action. Each step is recorded as it ends (``phase_steps``, as for
setup and reduce), so a resume continues the phase at its first unfinished step, and a
failed step fails the job (resumable).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mapwise.domain.records import StepsOutcome
from mapwise.domain.states import Phase
from mapwise.engine.context import JobContext
from mapwise.engine.phases import _run_phase
from mapwise.interpolate import Scope
from mapwise.workspace.command import run_git

TARGET_KEY = "target_branch"


def checked_out_branch(repo: Path) -> str:
    """The branch checked out in ``repo`` (the user's checkout); "" when HEAD is detached."""
    result = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=repo, check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def with_target_branch(options: dict[str, Any], workspace_key: str, repo: Path) -> dict[str, Any]:
    """The job's stored options with the user's current branch recorded in its workspace."""
    stored = dict(options.get(workspace_key) or {})
    stored.setdefault(TARGET_KEY, checked_out_branch(repo))
    return {**options, workspace_key: stored}


def merge_variables(ctx: JobContext) -> dict[str, str]:
    """``${merge.*}``: the job branch, the user's branch, the job worktree, the job id."""
    ws = ctx.workspace
    assert ws is not None  # the merge phase runs in worktree mode only
    stored = ctx.store.job().options.get("workspace") or {}
    return {
        "merge.source_branch": ws.job_branch,
        "merge.target_branch": str(stored.get(TARGET_KEY, "")),
        "merge.worktree": str(ws.job_worktree),
        "merge.session_id": ctx.job_id,
    }


def wants_merge(ctx: JobContext) -> bool:
    """Whether this job has a ``merge:`` block to run."""
    merge = ctx.workflow.merge
    return ctx.workspace is not None and merge is not None and bool(merge.commands)


def run_merge(ctx: JobContext) -> StepsOutcome:
    """Run the ``merge:`` steps from the first unfinished one."""
    merge = ctx.workflow.merge
    assert merge is not None
    captures = {**ctx.store.job().captures, **merge_variables(ctx)}
    scope = Scope(job_id=ctx.job_id, env=ctx.workflow.env, captures=captures)
    deadline = None if merge.timeout is None else time.monotonic() + merge.timeout
    return _run_phase(ctx, Phase.MERGE, merge.commands, scope, deadline)
