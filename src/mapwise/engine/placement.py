"""Where the map phase runs: choosing and building the executor of a run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mapwise.errors import UserError
from mapwise.executors.base import Executor
from mapwise.workflow.model import Workflow

KINDS = ("local", "dask")


@dataclass(frozen=True)
class Placement:
    """An executor kind and, for Dask, the scheduler's address."""

    kind: str = "local"
    scheduler: str | None = None

    def to_options(self) -> dict[str, Any]:
        return {"executor": self.kind, "scheduler": self.scheduler}


def choose_placement(
    kind: str | None,
    scheduler: str | None,
    workflow: Workflow,
    stored: Mapping[str, Any] | None = None,
) -> Placement:
    """The command line wins, then the job's earlier choice (resume), then the workflow."""
    stored = stored or {}
    chosen = kind or stored.get("executor") or workflow.executor.kind
    if chosen not in KINDS:
        raise UserError(f"unknown executor {chosen!r}: choose one of {', '.join(KINDS)}")
    if chosen == "local":
        if scheduler:
            raise UserError("--scheduler is only for --executor dask")
        return Placement("local")
    address = scheduler or stored.get("scheduler") or workflow.executor.scheduler
    if not address:
        raise UserError(
            "the dask executor needs a scheduler address: --scheduler tcp://HOST:PORT, or "
            "executor: {kind: dask, scheduler: ...} in the workflow"
        )
    return Placement("dask", str(address))


def build_executor(
    placement: Placement, max_parallel: int, job_id: str, folder: str | None = None
) -> Executor:
    """Make the executor; a Dask one connects now (``ExecutorError`` if it cannot).

    ``folder`` is the job's ``MAPWISE_JOB_DIR``, which tells its leftovers on the workers
    from those of a job of the same id elsewhere."""
    if placement.kind == "dask":
        from mapwise.executors.dask import DaskExecutor

        assert placement.scheduler is not None
        return DaskExecutor(placement.scheduler, max_parallel, job_id, folder)
    from mapwise.executors.local import LocalExecutor

    return LocalExecutor(max_parallel)
