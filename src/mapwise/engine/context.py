"""What the phases of one run share: the job's store, workflow, events and stop switch."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mapwise.engine.checkpointer import Checkpointer
from mapwise.engine.events import EventBus
from mapwise.engine.placement import Placement
from mapwise.engine.signals import StopController
from mapwise.engine.workspaces import JobWorkspace
from mapwise.errors import UserError
from mapwise.executors.orphans import JOB_DIR_VARIABLE, JOB_VARIABLE
from mapwise.store.jobstore import JobStore
from mapwise.store.paths import JobPaths
from mapwise.workflow.model import Workflow

DEFAULT_KILL_GRACE = 5.0


def claude_command(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The agent CLI: ``MAPWISE_CLAUDE`` (split like a shell would), else ``claude``."""
    configured = environ.get("MAPWISE_CLAUDE", "").strip()
    return tuple(shlex.split(configured)) if configured else ("claude",)


def codex_command(environ: Mapping[str, str]) -> tuple[str, ...]:
    """Codex's CLI: ``MAPWISE_CODEX`` (split like a shell would), else ``codex``."""
    configured = environ.get("MAPWISE_CODEX", "").strip()
    return tuple(shlex.split(configured)) if configured else ("codex",)


def max_cost(options: Mapping[str, object], workflow: Workflow) -> float | None:
    """The job's budget: ``--max-cost`` as the job last got it, else the workflow's."""
    given = options.get("max_cost_usd")
    if isinstance(given, int | float) and not isinstance(given, bool):
        return float(given)
    return workflow.error_policy.max_cost_usd


def kill_grace(environ: Mapping[str, str]) -> float:
    """Seconds between TERM and KILL for a process group (``MAPWISE_KILL_GRACE``)."""
    raw = environ.get("MAPWISE_KILL_GRACE")
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_KILL_GRACE
    except ValueError:
        return DEFAULT_KILL_GRACE


def expanded_workflow(workflow: Workflow, environ: Mapping[str, str]) -> Workflow:
    """``workflow`` with its ``env`` values expanded against ``environ`` (SPEC section 2,
    ``mapwise.envexpand``). Done once where a run starts, on the workflow as loaded, so
    that each run (a resume on another machine too) expands against its own environment.
    """
    from mapwise.envexpand import expand_env

    if not workflow.env:
        return workflow
    return workflow.model_copy(update={"env": expand_env(workflow.env, environ).env})


def base_environment(workflow: Workflow, job_id: str, folder: str | None = None) -> dict[str, str]:
    """The environment every command of the job starts from; ``folder`` is the job's
    ``MAPWISE_JOB_DIR`` (``orphans.job_dir``), absent where there is no job (validate)."""
    env = {**os.environ, **workflow.env, JOB_VARIABLE: job_id}
    if folder is not None:
        env[JOB_DIR_VARIABLE] = folder
    return env


@dataclass(frozen=True)
class JobContext:
    """One run of one job, as the phases see it."""

    job_id: str
    paths: JobPaths
    store: JobStore
    workflow: Workflow
    base_dir: Path
    run_no: int
    host: str
    max_parallel: int
    placement: Placement
    kill_grace: float
    claude_command: tuple[str, ...]
    bus: EventBus
    stop: StopController
    base_env: Mapping[str, str]
    checkpointer: Checkpointer
    workspace: JobWorkspace | None = None  # worktree mode
    codex_command: tuple[str, ...] = ("codex",)
    max_cost_usd: float | None = None  # the job's budget in USD (SPEC section 9)
    source_dir: Path | None = None  # worktree mode: the workflow file's own folder


def check_max_cost(value: float | None) -> None:
    """A budget is a positive number of USD (``inf``: no limit); anything else exits 2."""
    if value is None:
        return
    if value != value or value <= 0:
        raise UserError(f"--max-cost must be a positive amount of USD, got {value}")
