"""The Dask tests' helpers: the executor choice, a local cluster, jobs run through the CLI.

``distributed`` is imported only when a cluster starts: ``tests/dask/conftest.py`` skips
the folder when it is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from helpers.jobs import WAIT_SECONDS, Coordinator, Done, Workspace


def start_local_cluster(**options: Any) -> Any:
    """A LocalCluster of worker processes bound to 127.0.0.1, the dashboard on a free port.

    Its nannies set variables in this process's environment for the workers they spawn
    (``MALLOC_TRIM_THRESHOLD_``, ``PYTHONHASHSEED``, ``OMP_NUM_THREADS`` ...); they are
    taken back once the workers run, so the tests after it start their jobs without them.
    """
    from distributed import LocalCluster

    settings: dict[str, Any] = {
        "n_workers": 2,
        "threads_per_worker": 2,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        **options,
    }
    before = dict(os.environ)
    try:
        return LocalCluster(**settings)
    finally:
        for name in set(os.environ) - set(before):
            del os.environ[name]
        os.environ.update(before)


@dataclass(frozen=True)
class ExecutorChoice:
    """How a test asks for an executor: CLI arguments and API keyword arguments."""

    kind: str  # local | dask
    scheduler: str | None = None
    args: tuple[str, ...] = ()  # for ``mapwise run`` / ``resume``
    kwargs: dict[str, str] = field(default_factory=dict)  # for ``mapwise.run_workflow``


def mapwise_cli(ws: Workspace, *args: str) -> Done:
    """``python -m mapwise ARGS --state-dir STATE`` to its end (not quiet)."""
    done = subprocess.run(
        [sys.executable, "-m", "mapwise", *args, "--state-dir", str(ws.state_dir)],
        cwd=ws.root,
        env=ws.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS * 2,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def run_job(ws: Workspace, job: str, *args: str) -> Done:
    return mapwise_cli(ws, "run", str(ws.workflow_path), "--job-id", job, *args)


def start_job(ws: Workspace, job: str, *args: str) -> Coordinator:
    return ws.start("run", str(ws.workflow_path), "--job-id", job, *args)


def attempts_in_order(ws: Workspace, job: str, item_id: str) -> list[dict[str, Any]]:
    """An item's attempts in the order they started."""
    return ws.db(job).rows(
        "SELECT a.* FROM attempts a JOIN items i ON i.idx = a.item_idx"
        " WHERE i.item_id = ? ORDER BY a.started_at",
        (item_id,),
    )


def assert_ran_on(executor: ExecutorChoice, hosts: list[str]) -> None:
    """Attempts under Dask name their worker (``host (tcp://...)``); local ones do not."""
    on_workers = ["(tcp://127.0.0.1:" in host for host in hosts]
    assert on_workers == [executor.kind == "dask"] * len(hosts), hosts
