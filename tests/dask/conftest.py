"""Fixtures of the Dask tests: a shared two-worker LocalCluster and the executor choice.

The whole folder is skipped when ``distributed`` is not importable (``mapwise[dask]`` is
an optional extra). The cluster binds to 127.0.0.1 only (dashboard on a free port) and
is shared by every test of the session; tests that kill workers use ``own_cluster``, a
cluster of their module's own (``helpers.cluster.OwnCluster``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed")

from helpers.cluster import ExecutorChoice, OwnCluster, start_local_cluster, start_own_cluster
from helpers.jobs import Workspace, workspace


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """The address of the session's two-worker LocalCluster (closed at the end)."""
    cluster = start_local_cluster()
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[OwnCluster]:
    """A cluster of three one-thread workers, for the tests of one module that kill them."""
    cluster = start_own_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


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
    """A project folder with markers and pid notes (``helpers.jobs``)."""
    yield from workspace(tmp_path, monkeypatch)
