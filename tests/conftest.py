"""The ``project`` fixture: a project folder (``helpers.project.Project``) to run in.

Commands of the workflows run for real, with ``MAPWISE_KILL_GRACE=0.5`` so that kills are
quick, and ``MAPWISE_CLAUDE`` pointing at the fake agent in ``examples/agent``.

The option ``--long`` (or ``MAPWISE_RELIABILITY_LONG=1``) runs the long versions of the
torture suites (tests/reliability, tests/workspace): it is defined here, in the conftest
pytest always loads at startup, so that it works whatever paths are given.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.project import FAKE_CLAUDE, KILL_GRACE, Project
from helpers.reliability import LONG_ENV


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the long versions of the torture suites (tests/reliability, tests/workspace)",
    )


@pytest.fixture(scope="session")
def long_run(pytestconfig: pytest.Config) -> bool:
    """Whether the long versions run (``--long`` or ``MAPWISE_RELIABILITY_LONG=1``)."""
    given = bool(pytestconfig.getoption("--long", default=False))
    return given or os.environ.get(LONG_ENV, "") not in ("", "0")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A project folder; the process runs in it with a short kill grace and the fake agent."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    monkeypatch.setenv("MAPWISE_KILL_GRACE", KILL_GRACE)
    monkeypatch.setenv("MAPWISE_CLAUDE", shlex.join([sys.executable, str(FAKE_CLAUDE)]))
    for name in ("FAKE_CLAUDE_EXIT", "FAKE_CLAUDE_RECORD_DIR", "FAKE_CLAUDE_STDERR"):
        monkeypatch.delenv(name, raising=False)
    yield Project(tmp_path)


@pytest.fixture(autouse=True)
def _fake_agent_stores(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test's fake agents keep their sessions in a folder of their own, never in
    the home folder, and no FAKE_* knob leaks in from the environment."""
    for name in list(os.environ):
        if name.startswith(("FAKE_CLAUDE_", "FAKE_CODEX_")):
            monkeypatch.delenv(name)
    stores = tmp_path_factory.mktemp("fake-agents")
    monkeypatch.setenv("FAKE_CLAUDE_HOME", str(stores / "claude"))
    monkeypatch.setenv("FAKE_CODEX_HOME", str(stores / "codex"))
