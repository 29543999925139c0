"""Shared fixtures: a project folder holding a workflow, ways to run it, and its job's database.

``project`` gives a :class:`Project` rooted in ``tmp_path``: write a workflow (a dict is
written as JSON, which is YAML; a string as-is) and its items, run it through the library
(``project.run``) or through the real command line in a subprocess (``project.run_cli`` /
``project.cli``), and query the job's SQLite state (``project.db(job_id)``).

Commands of the workflows run for real, with ``MAPWISE_KILL_GRACE=0.5`` so that kills are
quick, and ``MAPWISE_CLAUDE`` pointing at the fake agent in ``tests/fixtures``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import mapwise
from mapwise.cli.main import main
from mapwise.engine.runner import JobResult

FIXTURES = Path(__file__).parent / "fixtures"
FAKE_CLAUDE = FIXTURES / "fake_claude.py"
KILL_GRACE = "0.5"
CLI_TIMEOUT = 120.0


def mapreduce(
    template: Sequence[Mapping[str, Any] | str],
    *,
    name: str = "t",
    input: str = "items.json",
    setup: Sequence[Mapping[str, Any] | str] | None = None,
    reduce: Sequence[Mapping[str, Any] | str] | None = None,
    env: Mapping[str, str] | None = None,
    error_policy: Mapping[str, Any] | None = None,
    **map_options: Any,
) -> dict[str, Any]:
    """A workflow as a dict; a plain string step means ``{shell: ...}``."""

    def steps(items: Sequence[Mapping[str, Any] | str]) -> list[Mapping[str, Any]]:
        return [{"shell": s} if isinstance(s, str) else s for s in items]

    workflow: dict[str, Any] = {
        "name": name,
        "map": {"input": input, **map_options, "agent_template": steps(template)},
    }
    if env is not None:
        workflow["env"] = dict(env)
    if setup is not None:
        workflow["setup"] = steps(setup)
    if reduce is not None:
        workflow["reduce"] = steps(reduce)
    if error_policy is not None:
        workflow["error_policy"] = dict(error_policy)
    return workflow


@dataclass(frozen=True)
class CliRun:
    """A finished ``python -m mapwise ...`` subprocess."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def job_id(self) -> str:
        """The id from ``job <id>``, the first line of stderr of ``run``/``resume``."""
        first = self.stderr.splitlines()[0] if self.stderr else ""
        assert first.startswith("job "), f"first stderr line is {first!r}"
        return first.removeprefix("job ").strip()

    def json(self) -> Any:
        return json.loads(self.stdout)


class JobDb:
    """Read-only queries on one job's ``state.db`` (opened per query, closed after)."""

    def __init__(self, path: Path) -> None:
        assert path.is_file(), f"no database at {path}"
        self.path = path

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        assert rows, f"no row for {sql}"
        return next(iter(rows[0].values()))

    def job(self) -> dict[str, Any]:
        return self.rows("SELECT * FROM job")[0]

    def items(self) -> list[dict[str, Any]]:
        """Every frozen item in list order, its ``data`` decoded."""
        rows = self.rows("SELECT * FROM items ORDER BY idx")
        for row in rows:
            row["data"] = json.loads(row["data"])
        return rows

    def item(self, item_id: str) -> dict[str, Any]:
        rows = self.rows("SELECT * FROM items WHERE item_id = ?", (item_id,))
        assert rows, f"no item {item_id!r}"
        return rows[0]

    def statuses(self) -> dict[str, str]:
        return {r["item_id"]: r["status"] for r in self.rows("SELECT item_id, status FROM items")}

    def attempts(self, item_id: str | None = None) -> list[dict[str, Any]]:
        """Attempts (of one item, or all), each with its item's id, in attempt order."""
        sql = (
            "SELECT a.*, i.item_id FROM attempts a JOIN items i ON i.idx = a.item_idx"
            + (" WHERE i.item_id = ?" if item_id is not None else "")
            + " ORDER BY a.item_idx, a.attempt_no"
        )
        return self.rows(sql, (item_id,) if item_id is not None else ())

    def steps(self, phase: str = "map") -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM steps WHERE phase = ? ORDER BY id", (phase,))


class Project:
    """A temporary folder with a workflow, its items, a state directory, and ways to run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.workflow_path = root / "wf.yml"

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write(self, relative: str, text: str) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def write_items(self, items: Sequence[Any], relative: str = "items.json") -> Path:
        return self.write(relative, json.dumps(list(items)))

    def workflow(
        self, spec: Mapping[str, Any] | str, *, items: Sequence[Any] | None = None
    ) -> Path:
        """Write ``wf.yml`` (and ``items.json`` when ``items`` is given)."""
        if items is not None:
            self.write_items(items)
        text = textwrap.dedent(spec) if isinstance(spec, str) else json.dumps(spec, indent=2)
        return self.write(self.workflow_path.name, text)

    def read(self, relative: str) -> str:
        return (self.root / relative).read_text(encoding="utf-8")

    def lines(self, relative: str) -> list[str]:
        return self.read(relative).splitlines()

    def files(self, relative: str) -> dict[str, str]:
        """Name -> content of the files in a folder the commands wrote to."""
        folder = self.root / relative
        if not folder.is_dir():
            return {}
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}

    # -- running -----------------------------------------------------------------------

    def run(self, **options: Any) -> JobResult:
        """Run ``wf.yml`` in-process through the library (no signal handlers)."""
        return mapwise.run_workflow(
            self.workflow_path,
            state_dir=self.state_dir,
            install_signal_handlers=False,
            **options,
        )

    def cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        preexec_fn: Callable[[], Any] | None = None,
    ) -> CliRun:
        """Run ``python -m mapwise ARGS`` in the project folder; stdin is /dev/null."""
        command = [sys.executable, "-m", "mapwise", *args]
        done = subprocess.run(
            command,
            cwd=self.root,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            preexec_fn=preexec_fn,
            check=False,
        )
        return CliRun(tuple(args), done.returncode, done.stdout, done.stderr)

    def run_cli(self, *extra: str, env: Mapping[str, str] | None = None) -> CliRun:
        """``mapwise run wf.yml --state-dir STATE EXTRA...``."""
        return self.cli(
            "run", str(self.workflow_path), "--state-dir", str(self.state_dir), *extra, env=env
        )

    def inspect(self, *args: str) -> CliRun:
        """A read-only command (``status``, ``dlq``, ``jobs``, ``logs``) on this state dir,
        in-process through the CLI's entry point (see :func:`run_main`)."""
        return run_main(*args, "--state-dir", str(self.state_dir))

    # -- state -------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self.state_dir / "jobs" / job_id

    def db(self, job_id: str) -> JobDb:
        return JobDb(self.job_dir(job_id) / "state.db")


def run_main(*args: str) -> CliRun:
    """Run ``mapwise ARGS`` in this process through ``mapwise.cli.main.main``.

    The same code as the console script (parsing, rendering, the mapping of errors to
    exit codes) without the ~0.5 s interpreter start; used for commands that only read
    state. Commands that run jobs go through a real subprocess (``Project.cli``).
    """
    streams = [io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)]
    streams.append(io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True))
    out, err = streams  # text streams with a .buffer, like the real ones
    code: int = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else int(done.code is not None)
    texts = []
    for stream in streams:
        stream.flush()
        raw = stream.buffer
        assert isinstance(raw, io.BytesIO)
        texts.append(raw.getvalue().decode("utf-8", errors="replace"))
    return CliRun(tuple(args), code, texts[0], texts[1])


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


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")
