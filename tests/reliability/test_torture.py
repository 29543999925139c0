"""Crash torture: ``kill -9`` the coordinator at random moments until the job completes.

A 500-item job on 8 slots (each item writes a marker line and exits, some after a tiny
sleep) is started as a real subprocess in its own session, and ``kill -9``\\ed at a random
moment: any time after the interpreter starts, or a random number of item starts into
the round. The database is read right after each kill; then the job is resumed, and
that resume may be killed in turn. The short version (CI) makes 20 kills then lets a
final resume finish; the long one (``--long``) makes 500, starting a new job with a new
seed whenever one completes.

At the end of each job it checks what resume promises and prints the figures:
every item succeeded exactly once; no item recorded as succeeded at a kill ran again
afterwards (runs are told apart by their attempt number, so a command the dead
coordinator left running is not mistaken for a re-run); at most ``max_parallel`` items
ran again per kill; no two runs of an item overlapped; no process of the job is alive
(pid notes and a scan of ``/proc/*/environ`` for ``MAPWISE_JOB_ID``); ``verify`` is clean.

The seed is printed; ``MAPWISE_TORTURE_SEED=N`` replays it (kill moments depend on timing
too, so a replay is close, not exact).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.jobs import Coordinator, Workspace, item_command, overlapping_runs
from helpers.processes import job_processes
from helpers.reliability import seed_from

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

TOTAL_ITEMS = 500
MAX_PARALLEL = 8
SHORT_KILLS = 20
LONG_KILLS = 500
ANYTIME_SECONDS = 1.0  # "anytime" kills land in the first second of a coordinator's life
CHECKPOINT_ENV = {"MAPWISE_CHECKPOINT_SECONDS": "0.3", "MAPWISE_CHECKPOINT_ITEMS": "40"}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    return tmp_path


@dataclass(frozen=True)
class Kill:
    """The job's state read right after one ``kill -9``."""

    moment: str  # "anytime" or "map"
    phase: str | None  # the job's phase (None: no database yet)
    runs: int  # runs recorded (a kill before begin_run adds none)
    succeeded: frozenset[str]
    running: frozenset[str]  # items with an attempt left running: their work is lost
    known: frozenset[tuple[str, int]]  # (item, attempt) pairs claimed so far


@dataclass
class Figures:
    """What one torture run measured, over every job it ran."""

    seed: int
    jobs: int = 0
    kills: int = 0
    moments: dict[str, int] = field(default_factory=dict)
    phases: dict[str, int] = field(default_factory=dict)
    starts: int = 0  # item runs seen (start markers)
    reruns: int = 0  # item runs beyond the first of each item
    lost_per_kill: list[int] = field(default_factory=list)
    reran_per_kill: list[int] = field(default_factory=list)
    seconds: float = 0.0

    def report(self) -> str:
        lost, reran = self.lost_per_kill or [0], self.reran_per_kill or [0]
        return (
            f"torture figures (seed {self.seed}): {self.jobs} job(s) of {TOTAL_ITEMS} items "
            f"on {MAX_PARALLEL} slots, {self.kills} kill -9 rounds "
            f"(moments {self.moments}, phases {self.phases}) in {self.seconds:.0f}s; "
            f"{self.starts} item runs, {self.reruns} re-runs; items in flight per kill: "
            f"max {max(lost)}, mean {sum(lost) / len(lost):.2f}; re-run per kill: "
            f"max {max(reran)}, mean {sum(reran) / len(reran):.2f}; items recorded as "
            "succeeded that ran again: 0; processes left: 0; verify: clean"
        )


def _workflow(ws: Workspace, rng: random.Random) -> None:
    """500 items; one in five sleeps 10-50 ms, the others exit at once."""
    items = [
        {
            "id": f"i{n:03d}",
            "s": rng.choice(("0.01", "0.02", "0.05")) if rng.random() < 0.2 else "0",
        }
        for n in range(TOTAL_ITEMS)
    ]
    ws.write_workflow(
        [item_command("sleep ${item.s}")],
        items=items,
        reduce=['echo "${map.successful}/${map.total}" > result.txt'],
        max_parallel=MAX_PARALLEL,
    )


def _new_item_starts(ws: Workspace, since: int) -> int:
    return sum(1 for m in ws.starts(since) if m.name.startswith("i"))


def _kill_at_random(
    ws: Workspace, coordinator: Coordinator, rng: random.Random, since: int, first: bool
) -> str | None:
    """``kill -9`` the coordinator at a random moment; its kind, or None if it ended first.

    The first round always waits for an item to start, so that the job exists.
    """
    moment = "map" if first or rng.random() < 0.5 else "anytime"
    if moment == "anytime":
        deadline = time.monotonic() + rng.uniform(0.0, ANYTIME_SECONDS)
        while time.monotonic() < deadline and coordinator.running():
            time.sleep(0.005)
    else:
        wanted = rng.randint(1, 40)
        if not coordinator.wait_for(
            lambda: _new_item_starts(ws, since) >= wanted,
            what=f"{wanted} item starts",
        ):
            return None
        time.sleep(rng.uniform(0.0, 0.03))
    if not coordinator.running():
        return None
    returncode = coordinator.kill9()
    if returncode != -signal.SIGKILL:  # it ended in the instant before the kill
        assert returncode == 0, coordinator.stderr
        return None
    return moment


def _snapshot(ws: Workspace, job: str, moment: str) -> Kill:
    database = ws.state_dir / "jobs" / job / "state.db"
    if not database.exists():
        return Kill(moment, None, 0, frozenset(), frozenset(), frozenset())
    db = ws.db(job)
    attempts = db.rows(
        "SELECT i.item_id, a.attempt_no, a.outcome FROM attempts a"
        " JOIN items i ON i.idx = a.item_idx"
    )
    return Kill(
        moment=moment,
        phase=db.job()["phase"],
        runs=len(db.runs()),
        succeeded=frozenset(db.item_ids_with("succeeded")),
        running=frozenset(a["item_id"] for a in attempts if a["outcome"] == "running"),
        known=frozenset((a["item_id"], a["attempt_no"]) for a in attempts),
    )


def _torture_job(
    ws: Workspace, job: str, rng: random.Random, max_kills: int, figures: Figures
) -> list[Kill]:
    """Start the job, kill and resume it until it completes or ``max_kills`` kills were
    made, then let a last resume finish it (exit 0)."""
    kills: list[Kill] = []
    while True:
        since = ws.marker_offset()
        first = not kills
        env = CHECKPOINT_ENV
        coordinator = ws.start_run(job, env=env) if first else ws.start_resume(job, env=env)
        moment = None
        if len(kills) < max_kills:
            moment = _kill_at_random(ws, coordinator, rng, since, first)
        if moment is None:
            assert coordinator.wait() == 0, coordinator.stderr
            return kills
        kill = _snapshot(ws, job, moment)
        kills.append(kill)
        figures.moments[moment] = figures.moments.get(moment, 0) + 1
        phase = kill.phase or "none"
        figures.phases[phase] = figures.phases.get(phase, 0) + 1


def _check_job(ws: Workspace, job: str, kills: list[Kill], figures: Figures) -> None:
    """The promises, checked against the markers and the final database."""
    db = ws.db(job)
    items = db.items()
    assert len(items) == TOTAL_ITEMS
    assert {(r["status"], r["attempts"]) for r in items} == {("succeeded", 1)}
    outcomes: dict[str, list[str]] = {}
    for attempt in db.attempts():
        outcomes.setdefault(attempt["item_id"], []).append(attempt["outcome"])
    for item_id, seen in outcomes.items():
        assert seen.count("succeeded") == 1, (item_id, seen)
        assert set(seen) <= {"succeeded", "interrupted"}, (item_id, seen)
    assert db.job()["status"] == "completed"
    assert ws.path("result.txt").read_text().split() == [f"{TOTAL_ITEMS}/{TOTAL_ITEMS}"]

    starts = [m for m in ws.starts() if m.name.startswith("i")]
    runs = {(m.name, m.tag) for m in starts}
    figures.starts += len(runs)
    figures.reruns += len(runs) - TOTAL_ITEMS
    assert {name for name, _ in runs} == {r["item_id"] for r in items}
    for number, kill in enumerate(kills, 1):
        later = {name for name, tag in runs if (name, tag) not in kill.known}
        again = later & kill.succeeded
        assert not again, f"kill {number}: items recorded as succeeded ran again: {again}"
        assert len(kill.running) <= MAX_PARALLEL, f"kill {number}: {sorted(kill.running)}"
        reran = later & kill.running
        assert len(reran) <= MAX_PARALLEL, f"kill {number}: {sorted(reran)} ran again"
        figures.lost_per_kill.append(len(kill.running))
        figures.reran_per_kill.append(len(reran))
    assert figures.reruns <= MAX_PARALLEL * figures.kills
    assert overlapping_runs(ws.markers()) == []

    assert job_processes(job) == []
    assert [pid for pid in ws.live_commands() if _ours(pid, ws)] == []
    verified = ws.inspect("verify", job)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _ours(pid: int, ws: Workspace) -> bool:
    """Whether a live process in a noted group is the job's: its environment names our
    marker file. (The pid space is small and other sessions on the machine start process
    groups too, so a noted group id may since belong to a stranger.)"""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"M={ws.marker_path}".encode() in environ


def _workspaces(root: Path) -> Iterator[Workspace]:
    number = 0
    while True:
        folder = root / f"job{number}"
        folder.mkdir()
        yield Workspace(folder)
        number += 1


def test_kill9_torture_loses_nothing_and_reruns_at_most_max_parallel_per_kill(
    root: Path, monkeypatch: pytest.MonkeyPatch, long_run: bool
) -> None:
    # Given a seed, and a kill budget: 20 (CI) or 500 (--long)
    seed = seed_from("MAPWISE_TORTURE_SEED")
    budget = LONG_KILLS if long_run else SHORT_KILLS
    figures = Figures(seed)
    started = time.monotonic()
    used: list[Workspace] = []
    try:
        for ws in _workspaces(root):
            used.append(ws)
            monkeypatch.chdir(ws.root)
            rng = random.Random(seed + figures.jobs)
            _workflow(ws, rng)
            job = f"torture-{os.getpid()}-{figures.jobs}"

            # When its coordinator is killed with kill -9 at random moments, each time
            # resumed, until the job completes (a last resume finishes it)
            kills = _torture_job(ws, job, rng, budget - figures.kills, figures)
            figures.kills += len(kills)
            figures.jobs += 1

            # Then every promise holds for this job
            _check_job(ws, job, kills, figures)
            if figures.kills >= budget:
                break
    finally:
        for ws in used:
            ws.cleanup()
    figures.seconds = time.monotonic() - started
    print(figures.report())
    assert figures.kills == budget
