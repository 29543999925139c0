"""A project folder holding a workflow, ways to run it, and its job's database.

A :class:`Project` is rooted in a temporary folder: write a workflow (a dict is written
as JSON, which is YAML; a string as-is) and its items, run it through the library
(``project.run``) or through the real command line in a subprocess (``project.run_cli`` /
``project.cli``), and query the job's SQLite state (``project.db(job_id)``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mapwise
from helpers.jobdb import JobDb
from mapwise.cli.main import main
from mapwise.engine.runner import JobResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FAKE_CLAUDE = Path(__file__).resolve().parents[2] / "examples" / "agent" / "fake_claude.py"
KILL_GRACE = "0.5"  # MAPWISE_KILL_GRACE of the tests' jobs: kills are quick
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
    """A finished ``mapwise ...`` command: in a subprocess or through :func:`run_main`."""

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
