"""Helpers for the tests that stop jobs for real and resume them.

A :class:`Workspace` is a temporary project: a workflow, its items, a state directory,
a marker file and a folder of pids that the commands themselves write. Coordinators run
as real subprocesses in their own session (``start_new_session``), so a signal or a
``kill -9`` reaches the coordinator alone and never the commands it started.

The commands write short lines to the marker file with ``>>`` appends::

    start <name> <tag> <pid> [extra...]
    end   <name> <tag> <pid> [extra...]

``name`` is the item id (``$MAPWISE_ITEM_ID``) or ``setup-K`` / ``reduce-K``; ``tag`` is
``$MAPWISE_ATTEMPT`` for items and ``0`` for setup and reduce steps; ``pid`` is the
shell's ``$$``, which is also the id of the command's process group. Each command also
creates ``pids/<$$>`` so a test can check that no process of the job is left alive.

The resume, crash, signal, torture and Dask tests use these helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import mapwise
from helpers.jobdb import JobDb
from helpers.processes import live_members
from helpers.project import KILL_GRACE, run_main
from mapwise.engine.runner import JobResult

WAIT_SECONDS = 60.0  # generous bound on any wait: a hang fails the test, speed never does
POLL_SECONDS = 0.01

# Shell snippets for the commands. ``$M`` (the marker file) and ``$P`` (the pid folder)
# come from the workflow's env.
NOTE_PID = ': > "$P/$$"'
ITEM_END = 'echo "end $MAPWISE_ITEM_ID $MAPWISE_ATTEMPT $$" >> "$M"'


def _marker(kind: str, name: str, extra: str) -> str:
    fields = " ".join(f for f in (kind, name, "0", "$$", extra) if f)
    return f'echo "{fields}" >> "$M"'


def step_start(name: str, extra: str = "") -> str:
    """The marker a setup or reduce step writes when it starts."""
    return _marker("start", name, extra)


def step_end(name: str, extra: str = "") -> str:
    """The marker a setup or reduce step writes when it ends."""
    return _marker("end", name, extra)


def item_start(extra: str = "") -> str:
    """The marker an item's command writes when it starts (``extra`` tells templates apart)."""
    fields = " ".join(f for f in ("start $MAPWISE_ITEM_ID $MAPWISE_ATTEMPT $$", extra) if f)
    return f'echo "{fields}" >> "$M"'


def item_command(body: str, extra: str = "") -> str:
    """An agent template step that notes its pid and brackets ``body`` with markers; it
    exits with ``body``'s status."""
    return f"{NOTE_PID}; {item_start(extra)}; {body}; status=$?; {ITEM_END}; exit $status"


def block_while(path_var: str) -> str:
    """Shell that waits while the file named by ``$path_var`` exists."""
    return f'while [ -e "${path_var}" ]; do sleep 0.05; done'


# -- markers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    """One line a command wrote to the marker file."""

    kind: str  # start | end | term | ...
    name: str  # item id, setup-K or reduce-K
    tag: int  # the attempt number for items, 0 for setup and reduce steps
    pid: int  # the shell's $$: the command's process group
    extra: tuple[str, ...]
    offset: int  # byte offset of the line in the file


def parse_markers(data: bytes, start: int = 0) -> list[Marker]:
    """The complete, well-formed lines of ``data[start:]`` (a torn last line is skipped)."""
    markers: list[Marker] = []
    offset = start
    for raw in data[start:].split(b"\n"):
        line_offset = offset
        offset += len(raw) + 1
        parts = raw.decode(errors="replace").split()
        if len(parts) < 4 or not parts[2].isdigit() or not parts[3].isdigit():
            continue
        markers.append(
            Marker(parts[0], parts[1], int(parts[2]), int(parts[3]), tuple(parts[4:]), line_offset)
        )
    return markers


def overlapping_runs(markers: Sequence[Marker]) -> list[str]:
    """Names that ran twice at once: an ``end`` of one run after a later run ``start``\\ed.

    Each run of a command is told apart by its pid. Once a newer run of the same name has
    started, no older run may still write its end marker.
    """
    problems: list[str] = []
    started: dict[str, list[int]] = {}
    for marker in markers:
        runs = started.setdefault(marker.name, [])
        if marker.kind == "start":
            runs.append(marker.pid)
        elif marker.kind == "end" and marker.pid in runs and runs[-1] != marker.pid:
            problems.append(f"{marker.name}: pid {marker.pid} ended after pid {runs[-1]} started")
    return problems


def wait_until(
    condition: Callable[[], bool],
    *,
    what: str,
    unless: Callable[[], bool] | None = None,
    timeout: float = WAIT_SECONDS,
) -> bool:
    """Poll ``condition``; False if ``unless`` became true first, AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if unless is not None and unless():
            return condition()
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Coordinator:
    """A ``python -m mapwise run|resume`` subprocess in its own session."""

    def __init__(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> None:
        self.args = tuple(args)
        self._err_file = (cwd / f".coordinator-{time.monotonic_ns()}.err").open("w+b")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mapwise", *args],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._err_file,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_for(
        self, condition: Callable[[], bool], *, what: str, timeout: float = WAIT_SECONDS
    ) -> bool:
        """``wait_until(condition)`` while the coordinator runs: False if it ended first
        (with ``condition`` still false), AssertionError on timeout."""
        return wait_until(condition, what=what, unless=lambda: not self.running(), timeout=timeout)

    def send(self, sig: int) -> None:
        """Signal the coordinator alone (its commands run in sessions of their own)."""
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = WAIT_SECONDS) -> int:
        return self.proc.wait(timeout=timeout)

    def kill9(self) -> int:
        """``kill -9`` the coordinator and wait for it to be gone; its return code."""
        self.send(signal.SIGKILL)
        return self.wait()

    @property
    def stderr(self) -> str:
        self._err_file.flush()
        self._err_file.seek(0)
        return self._err_file.read().decode(errors="replace")

    def close(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait(timeout=WAIT_SECONDS)
        self._err_file.close()


@dataclass(frozen=True)
class Done:
    """A finished command: exit code and output."""

    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


# -- the workspace ---------------------------------------------------------------------


class Workspace:
    """A project folder with its workflow, items, state, markers and pid notes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.workflow_path = root / "wf.yml"
        self.marker_path = root / "markers.log"
        self.pid_dir = root / "pids"
        self.pid_dir.mkdir()
        self.marker_path.touch()
        self.coordinators: list[Coordinator] = []

    def path(self, relative: str) -> Path:
        return self.root / relative

    # -- writing the job -----------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        """The workflow env every test workflow gets: where markers and pids go."""
        return {"M": str(self.marker_path), "P": str(self.pid_dir)}

    def write_workflow(
        self,
        template: Sequence[Mapping[str, Any] | str],
        *,
        items: Sequence[Any] | None = None,
        setup: Sequence[Mapping[str, Any] | str] = (),
        reduce: Sequence[Mapping[str, Any] | str] = (),
        env: Mapping[str, str] | None = None,
        error_policy: Mapping[str, Any] | None = None,
        **map_options: Any,
    ) -> Path:
        """Write ``wf.yml`` (JSON, which is YAML); a plain string step is ``{shell: ...}``."""

        def steps(given: Sequence[Mapping[str, Any] | str]) -> list[dict[str, Any]]:
            return [{"shell": s} if isinstance(s, str) else dict(s) for s in given]

        spec: dict[str, Any] = {
            "name": "resumable",
            "env": {**self.base_env(), **(env or {})},
            "map": {
                "input": "items.json",
                "id": "${item.id}",
                **map_options,
                "agent_template": steps(template),
            },
        }
        if setup:
            spec["setup"] = steps(setup)
        if reduce:
            spec["reduce"] = steps(reduce)
        if error_policy is not None:
            spec["error_policy"] = dict(error_policy)
        if items is not None:
            self.write_items(items)
        self.workflow_path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        return self.workflow_path

    def write_items(self, items: Sequence[Any]) -> Path:
        path = self.root / "items.json"
        path.write_text(json.dumps(list(items)), encoding="utf-8")
        return path

    def flag(self, name: str) -> Path:
        """A flag file that commands test for (``[ -e "$NAME" ]``)."""
        return self.root / name

    # -- markers -------------------------------------------------------------------------

    def marker_offset(self) -> int:
        return self.marker_path.stat().st_size

    def markers(self, since: int = 0) -> list[Marker]:
        return parse_markers(self.marker_path.read_bytes(), since)

    def starts(self, since: int = 0, *, prefix: str = "") -> list[Marker]:
        return [m for m in self.markers(since) if m.kind == "start" and m.name.startswith(prefix)]

    def count(self, kind: str, name: str, since: int = 0) -> int:
        return sum(1 for m in self.markers(since) if m.kind == kind and m.name == name)

    # -- processes -----------------------------------------------------------------------

    def command_pgids(self) -> set[int]:
        """The process groups of every command the job ever started (from ``pids/``)."""
        return {int(p.name) for p in self.pid_dir.iterdir() if p.name.isdigit()}

    def live_commands(self) -> list[int]:
        return live_members(self.command_pgids())

    def noted_pgids(self, job_id: str) -> set[int]:
        """Process groups the job's slot notes (``slots/*.json``) name right now."""
        pgids: set[int] = set()
        for note in (self.state_dir / "jobs" / job_id / "slots").glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                pgids.add(int(json.loads(note.read_text())["pgid"]))
        return pgids

    def env(self, **extra: str) -> dict[str, str]:
        environ = {k: v for k, v in os.environ.items() if k != "MAPWISE_STATE_DIR"}
        return {**environ, "MAPWISE_KILL_GRACE": KILL_GRACE, **extra}

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> Coordinator:
        """Start ``python -m mapwise ARGS --state-dir STATE -q`` in its own session."""
        full = [*args, "--state-dir", str(self.state_dir), "-q"]
        coordinator = Coordinator(full, cwd=self.root, env=self.env(**(env or {})))
        self.coordinators.append(coordinator)
        return coordinator

    def start_run(self, job_id: str, *, env: Mapping[str, str] | None = None) -> Coordinator:
        return self.start("run", str(self.workflow_path), "--job-id", job_id, env=env)

    def start_resume(
        self, job_id: str, *extra: str, env: Mapping[str, str] | None = None
    ) -> Coordinator:
        return self.start("resume", job_id, *extra, env=env)

    def finish(self, coordinator: Coordinator) -> Done:
        """Wait for a coordinator to end on its own; its exit code and stderr."""
        code = coordinator.wait()
        return Done(code, "", coordinator.stderr)

    def resume(self, job_id: str, *extra: str, env: Mapping[str, str] | None = None) -> Done:
        """``mapwise resume JOB EXTRA...`` as a real subprocess, to its end."""
        return self.finish(self.start_resume(job_id, *extra, env=env))

    def run_library(self, job_id: str) -> JobResult:
        """A first run through the library, in this process (no signal handlers)."""
        return mapwise.run_workflow(
            self.workflow_path,
            state_dir=self.state_dir,
            job_id=job_id,
            install_signal_handlers=False,
        )

    def inspect(self, *args: str) -> Done:
        """A read-only command (``status``, ``jobs``) through the CLI entry point, in
        this process: the same parsing and rendering without an interpreter start."""
        done = run_main(*args, "--state-dir", str(self.state_dir))
        return Done(done.returncode, done.stdout, done.stderr)

    def db(self, job_id: str) -> JobDb:
        return JobDb(self.state_dir / "jobs" / job_id / "state.db")

    def cleanup(self) -> None:
        """Kill what a failed test may have left: coordinators, then command groups."""
        for coordinator in self.coordinators:
            coordinator.close()
        for pgid in self.command_pgids():
            if live_members({pgid}):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)


def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """The body of each test module's workspace fixture (a short kill grace, no
    inherited state dir); everything the test started is killed afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    monkeypatch.setenv("MAPWISE_KILL_GRACE", KILL_GRACE)
    ws = Workspace(tmp_path)
    try:
        yield ws
    finally:
        ws.cleanup()
