"""Fixtures of the Dask tests: a shared two-worker LocalCluster and the executor choice.

The whole folder is skipped when ``distributed`` is not importable (``mapwise[dask]`` is
an optional extra). The cluster binds to 127.0.0.1 only (dashboard on a free port) and
is shared by every test of the session; tests that kill workers start their own.

These tests reuse the stop-and-resume helpers of ``tests/integration/_jobs.py``
(``Workspace``, ``Coordinator``, markers): that folder is put on ``sys.path`` here.

Why the module ``__getattr__`` below: test modules elsewhere do ``from conftest import
Project``, and pytest imports every ``conftest.py`` outside a package under the one module
name ``conftest``, so loading this file replaces ``tests/conftest.py`` in ``sys.modules``
for every folder collected after this one. Names this module lacks are looked up in
``tests/conftest.py`` (as registered with pytest), so those imports keep working.
"""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed")

INTEGRATION = Path(__file__).parents[1] / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))

from _jobs import WAIT_SECONDS, Coordinator, Done, Workspace, workspace  # noqa: E402

_ROOT_CONFTEST: list[types.ModuleType] = []


def pytest_configure(config: pytest.Config) -> None:
    """Find ``tests/conftest.py`` among pytest's plugins, for ``__getattr__``."""
    root = config.pluginmanager.get_plugin(str(Path(__file__).parents[1] / "conftest.py"))
    if isinstance(root, types.ModuleType):
        _ROOT_CONFTEST[:] = [root]


def __getattr__(name: str) -> Any:
    """``from conftest import X`` in other folders: X from ``tests/conftest.py``."""
    if _ROOT_CONFTEST and not name.startswith("__"):
        return getattr(_ROOT_CONFTEST[0], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def start_local_cluster(**options: Any) -> Any:
    """A LocalCluster of worker processes bound to 127.0.0.1, the dashboard on a free port."""
    from distributed import LocalCluster

    settings: dict[str, Any] = {
        "n_workers": 2,
        "threads_per_worker": 2,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        **options,
    }
    return LocalCluster(**settings)


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """The address of the session's two-worker LocalCluster (closed at the end)."""
    cluster = start_local_cluster()
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


@dataclass(frozen=True)
class ExecutorChoice:
    """How a test asks for an executor: CLI arguments and API keyword arguments."""

    kind: str  # local | dask
    scheduler: str | None = None
    args: tuple[str, ...] = ()  # for ``mapwise run`` / ``resume``
    kwargs: dict[str, str] = field(default_factory=dict)  # for ``mapwise.run_workflow``


@pytest.fixture(params=["local", "dask"])
def executor(request: pytest.FixtureRequest) -> ExecutorChoice:
    """Each executor in turn; the Dask one on the session's cluster."""
    if request.param == "local":
        return ExecutorChoice("local", None, ("--executor", "local"), {"executor": "local"})
    address = request.getfixturevalue("dask_scheduler")
    return ExecutorChoice(
        "dask",
        address,
        ("--executor", "dask", "--scheduler", address),
        {"executor": "dask", "scheduler": address},
    )


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A project folder with markers and pid notes (``tests/integration/_jobs.py``)."""
    yield from workspace(tmp_path, monkeypatch)


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
