"""The ``project`` fixture: a project folder (``helpers.project.Project``) to run in.

Commands of the workflows run for real, with ``MAPWISE_KILL_GRACE=0.5`` so that kills are
quick, and ``MAPWISE_CLAUDE`` pointing at the fake agent in ``tests/fixtures``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.project import FAKE_CLAUDE, KILL_GRACE, Project


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
