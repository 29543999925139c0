"""``kill -9`` of the coordinator at random points of setup, map and reduce, then resume.

The kill points come from ``random.Random(seed)``; the seed is printed (and can be set
with ``MAPWISE_CHAOS_SEED``) so that a failure reproduces. After each kill the test reads
the job's database at once, then resumes, until the job exits 0. It then checks, from
the markers the commands wrote and the database, what resume promises: completed
work never runs again, at most ``max_parallel`` items run again per crash, the same item
never runs twice at once, and no process of the job is left alive.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mapwise
from helpers.jobs import (
    ITEM_END,
    NOTE_PID,
    POLL_SECONDS,
    Coordinator,
    Marker,
    Workspace,
    block_while,
    item_command,
    item_start,
    overlapping_runs,
    step_end,
    step_start,
    wait_until,
    workspace,
)
from helpers.processes import pid_alive

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

TOTAL_ITEMS = 60
MAX_PARALLEL = 4
SETUP_STEPS = 3
REDUCE_STEPS = 3
STEP_SLEEP = 0.2
ITEM_KILL_WINDOW = 0.15  # the longest wait after the chosen item start, in seconds
MARGIN = 0.05  # how long before the phase's known end a kill comes at the latest
KILLS = {"setup": 2, "map": 3, "reduce": 2}


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    yield from workspace(tmp_path, monkeypatch)


def _seed() -> int:
    given = os.environ.get("MAPWISE_CHAOS_SEED")
    seed = int(given) if given else random.randrange(2**32)
    print(f"chaos seed: MAPWISE_CHAOS_SEED={seed}")
    return seed


def _setup_step(index: int) -> dict[str, str]:
    """A setup step with markers; the first one prints a token it captures."""
    name = f"setup-{index}"
    token = '; echo "tok$$"' if index == 0 else ""
    shell = f"{NOTE_PID}; {step_start(name)}; sleep {STEP_SLEEP}{token}; {step_end(name)}"
    return {"shell": shell, "capture": "token"} if index == 0 else {"shell": shell}


def _reduce_step(index: int) -> str:
    name = f"reduce-{index}"
    return (
        f"{NOTE_PID}; {step_start(name)}; sleep {STEP_SLEEP}; {step_end(name, '${map.successful}')}"
    )


def _chaos_workflow(ws: Workspace, rng: random.Random) -> None:
    """Setup of 3 steps, 60 items sleeping 0.05-0.2 s on 4 slots, reduce of 3 steps."""
    items = [{"id": f"i{n:02d}", "s": round(rng.uniform(0.05, 0.2), 3)} for n in range(TOTAL_ITEMS)]
    ws.write_workflow(
        [f"{NOTE_PID}; {item_start('${token}')}; sleep ${{item.s}}; {ITEM_END}"],
        items=items,
        setup=[_setup_step(k) for k in range(SETUP_STEPS)],
        reduce=[_reduce_step(k) for k in range(REDUCE_STEPS)],
        max_parallel=MAX_PARALLEL,
    )


@dataclass(frozen=True)
class Kill:
    """What the state said right after one ``kill -9``."""

    offset: int  # size of the marker file once the coordinator was dead
    succeeded: frozenset[str]
    setup_done: frozenset[int]
    reduce_done: frozenset[int]


def _is_item(marker: Marker) -> bool:
    return marker.name.startswith("i")


@dataclass(frozen=True)
class KillPoint:
    """When to kill in one round: a random moment of at most ``window`` seconds after
    ``reached`` holds, and at once if ``phase_over`` holds first.

    The window ends before the phase's known end (``MARGIN``), and ``phase_over`` (the
    phase's last command wrote its end marker) cuts the wait short, so that the kill comes
    while the phase runs: a kill after it would land in the next phase, or miss a
    coordinator that already finished.
    """

    reached: Callable[[], bool]
    window: float
    phase_over: Callable[[], bool]


def _trigger(
    ws: Workspace, job: str, phase: str, rng: random.Random, since: int
) -> KillPoint | None:
    """Where to kill in this round: a random point of ``phase``; None if it is done."""
    known = ws.state_dir.joinpath("jobs", job, "state.db").exists()
    db = ws.db(job) if known else None
    if phase == "map":
        remaining = TOTAL_ITEMS - (len(db.item_ids_with("succeeded")) if db else 0)
        if remaining == 0:
            return None
        wanted = rng.randint(1, min(16, remaining))

        def ended() -> int:
            return len({m.name for m in ws.markers(since) if m.kind == "end" and _is_item(m)})

        return KillPoint(
            reached=lambda: sum(1 for m in ws.starts(since) if _is_item(m)) >= wanted,
            window=ITEM_KILL_WINDOW,
            phase_over=lambda: ended() >= remaining,
        )
    count = SETUP_STEPS if phase == "setup" else REDUCE_STEPS
    done = db.done_steps(phase) if db else set()
    unfinished = [k for k in range(count) if k not in done]
    if not unfinished:
        return None
    chosen = rng.choice(unfinished)
    name, last = f"{phase}-{chosen}", f"{phase}-{count - 1}"
    return KillPoint(
        reached=lambda: any(m.name == name for m in ws.starts(since)),
        # steps chosen..count-1 still run STEP_SLEEP each once ``name`` started
        window=min(STEP_SLEEP * 1.25, (count - chosen) * STEP_SLEEP - MARGIN),
        phase_over=lambda: any(m.kind == "end" and m.name == last for m in ws.markers(since)),
    )


def _during(phase: str, kill: Kill) -> bool:
    """Whether ``kill`` came before ``phase`` was recorded done."""
    if phase == "map":
        return len(kill.succeeded) < TOTAL_ITEMS
    done, count = (
        (kill.setup_done, SETUP_STEPS) if phase == "setup" else (kill.reduce_done, REDUCE_STEPS)
    )
    return len(done) < count


def _snapshot(ws: Workspace, job: str) -> Kill:
    db = ws.db(job)
    return Kill(
        offset=ws.marker_offset(),
        succeeded=frozenset(db.item_ids_with("succeeded")),
        setup_done=frozenset(db.done_steps("setup")),
        reduce_done=frozenset(db.done_steps("reduce")),
    )


def _start(ws: Workspace, job: str, first: bool) -> Coordinator:
    return ws.start_run(job) if first else ws.start_resume(job)


def _kill_when(coordinator: Coordinator, point: KillPoint, phase: str, rng: random.Random) -> bool:
    """Once ``point`` is reached, wait a random moment within its window (less if the
    phase ends first) and ``kill -9`` the coordinator. False if the job ended first."""
    if not coordinator.wait_for(point.reached, what=f"a kill point in {phase}"):
        return False
    deadline = time.monotonic() + rng.uniform(0, point.window)
    while time.monotonic() < deadline and not point.phase_over():
        time.sleep(POLL_SECONDS)
    if not coordinator.running():
        return False
    assert coordinator.kill9() == -signal.SIGKILL
    return True


def _run_with_kills(ws: Workspace, job: str, phase: str, rng: random.Random) -> list[Kill]:
    """Kill the coordinator in ``phase`` up to KILLS[phase] times, resuming each time,
    then let the job finish; it must exit 0."""
    kills: list[Kill] = []
    for round_no in range(KILLS[phase] + 1):
        since = ws.marker_offset()
        point = _trigger(ws, job, phase, rng, since) if len(kills) < KILLS[phase] else None
        coordinator = _start(ws, job, first=round_no == 0)
        if point is not None and _kill_when(coordinator, point, phase, rng):
            kill = _snapshot(ws, job)
            kills.append(kill)
            print(
                f"killed in {phase} at marker offset {kill.offset}: "
                f"{len(kill.succeeded)} items, setup steps {sorted(kill.setup_done)}, "
                f"reduce steps {sorted(kill.reduce_done)} recorded done"
            )
            continue
        returncode = coordinator.wait()
        assert returncode == 0, coordinator.stderr
        return kills
    raise AssertionError("the job did not finish")


def _check_final_state(ws: Workspace, job: str) -> None:
    """Every item succeeded exactly once, with one counted attempt; all steps done."""
    db = ws.db(job)
    items = db.items()
    assert len(items) == TOTAL_ITEMS
    assert {(r["status"], r["attempts"]) for r in items} == {("succeeded", 1)}
    ends = {(m.name, m.tag) for m in ws.markers() if m.kind == "end" and _is_item(m)}
    for item in items:
        attempts = [a for a in db.attempts() if a["item_idx"] == item["idx"]]
        outcomes = [a["outcome"] for a in attempts]
        assert outcomes.count("succeeded") == 1, (item["item_id"], outcomes)
        assert set(outcomes) <= {"succeeded", "interrupted"}, (item["item_id"], outcomes)
        winner = next(a for a in attempts if a["outcome"] == "succeeded")
        assert (item["item_id"], winner["attempt_no"]) in ends
    assert db.done_steps("setup") == set(range(SETUP_STEPS))
    assert db.done_steps("reduce") == set(range(REDUCE_STEPS))
    assert db.job()["status"] == "completed"


def _check_kills(ws: Workspace, job: str, kills: list[Kill]) -> None:
    """Nothing recorded done before a kill ran again; at most max_parallel re-runs each."""
    markers = ws.markers()
    starts = [m for m in markers if m.kind == "start"]
    for number, kill in enumerate(kills, 1):
        after = {m.name for m in starts if m.offset >= kill.offset}
        before = {m.name for m in starts if m.offset < kill.offset and _is_item(m)}
        assert not after & kill.succeeded, f"kill {number}: reran {after & kill.succeeded}"
        assert not after & {f"setup-{k}" for k in kill.setup_done}, f"kill {number}"
        assert not after & {f"reduce-{k}" for k in kill.reduce_done}, f"kill {number}"
        rerun = (before - kill.succeeded) & after
        assert len(rerun) <= MAX_PARALLEL, f"kill {number}: {sorted(rerun)} ran again"
    interrupted = ws.db(job).rows(
        "SELECT run_no, COUNT(*) AS n FROM attempts WHERE outcome = 'interrupted' GROUP BY run_no"
    )
    assert all(row["n"] <= MAX_PARALLEL for row in interrupted), interrupted


def _check_captures_and_reduce(ws: Workspace, job: str) -> None:
    """The map used the token of the setup run that was recorded; reduce saw all items."""
    token = json.loads(ws.db(job).job()["captures"])["token"]
    assert token.startswith("tok")
    markers = ws.markers()
    item_tokens = {m.extra for m in markers if m.kind == "start" and _is_item(m)}
    assert item_tokens == {(token,)}
    reduce_ends = [m.extra for m in markers if m.kind == "end" and m.name.startswith("reduce")]
    assert reduce_ends and set(reduce_ends) == {(str(TOTAL_ITEMS),)}


@pytest.mark.parametrize("phase", ["setup", "map", "reduce"])
def test_kill9_at_random_points_then_resume_runs_each_piece_of_work_once(
    ws: Workspace, phase: str
) -> None:
    # Given a job with setup, a 60-item map on 4 slots and reduce, all writing markers
    rng = random.Random(_seed())
    _chaos_workflow(ws, rng)
    job = f"chaos-{phase}"

    # When its coordinator is killed with kill -9 at random points of one phase, and
    # resumed after each kill until it exits 0
    kills = _run_with_kills(ws, job, phase, rng)

    # Then it was killed at least once while the phase ran, and every item and step is
    # done exactly once
    assert kills and _during(phase, kills[0]), kills
    _check_final_state(ws, job)
    # And nothing recorded done before a kill ran again; a kill re-ran at most 4 items
    _check_kills(ws, job, kills)
    # And the map used the captured token; reduce saw every item
    _check_captures_and_reduce(ws, job)
    # And no command ran twice at once, and none is left alive
    assert overlapping_runs(ws.markers()) == []
    assert ws.live_commands() == []


def test_resume_kills_what_a_dead_coordinator_left_running_and_runs_it_again(
    ws: Workspace,
) -> None:
    # Given items that block while a flag file exists if they start while a second flag
    # file exists (so the commands of the first run block, and those of the resume not)
    block, first_run = ws.flag("block"), ws.flag("first-run")
    block.touch()
    first_run.touch()
    body = f'if [ -e "$FIRST" ]; then {block_while("BLOCK")}; fi'
    items = [{"id": f"i{n}"} for n in range(4)]
    ws.write_workflow(
        [item_command(body)],
        items=items,
        env={"BLOCK": str(block), "FIRST": str(first_run)},
        max_parallel=2,
        retry={"max_attempts": 1},
    )
    job = "orphans"
    coordinator = ws.start_run(job)
    coordinator.wait_for(
        lambda: len(ws.starts()) == 2,
        what="two items running",
    )
    orphans = {m.name: m.pid for m in ws.starts()}
    # (Wait for the coordinator to note their process groups: a kill in the instant
    # between a spawn and its note leaves a group no resume can find; see the report.)
    wait_until(lambda: set(orphans.values()) <= ws.noted_pgids(job), what="the slot notes")

    # When the coordinator is killed with kill -9
    assert coordinator.kill9() == -signal.SIGKILL

    # Then its commands live on, and their attempts are left running
    assert all(pid_alive(pid) for pid in orphans.values())
    db = ws.db(job)
    assert {a["item_id"]: a["outcome"] for a in db.attempts()} == dict.fromkeys(orphans, "running")
    # And `jobs --json` and the library list the job as interrupted and resumable
    listing = ws.inspect("jobs", "--json")
    assert listing.returncode == 0, listing.stderr
    [shown] = listing.json()
    assert (shown["job_id"], shown["status"], shown["resumable"]) == (job, "interrupted", True)
    assert shown["progress"]["total_items"] == len(items)
    assert shown["progress"]["completed_items"] == 0
    [resumable] = mapwise.list_resumable_jobs(ws.state_dir)
    assert (resumable.job_id, resumable.status, resumable.resumable) == (job, "interrupted", True)
    assert resumable.progress.total_items == len(items)

    # When the job is resumed (the block flag still there: the old commands would block
    # forever, the new ones do not)
    first_run.unlink()
    done = ws.resume(job)

    # Then the old process groups were killed before their items ran again
    assert done.returncode == 0, done.stderr
    assert not any(pid_alive(pid) for pid in orphans.values()), (
        done.stderr,
        orphans,
        [Path(f"/proc/{p}/stat").read_text() for p in orphans.values() if pid_alive(p)],
    )
    assert overlapping_runs(ws.markers()) == []
    assert all(ws.count("end", item_id) == 1 for item_id in orphans)
    # And the killed attempts are interrupted, not counted against max_attempts (1)
    assert {r["item_id"]: (r["status"], r["attempts"]) for r in db.items()} == {
        i["id"]: ("succeeded", 1) for i in items
    }
    outcomes: dict[str, list[str]] = {}
    for attempt in db.attempts():
        outcomes.setdefault(attempt["item_id"], []).append(attempt["outcome"])
    for item_id in orphans:
        assert outcomes[item_id] == ["interrupted", "succeeded"]
    assert ws.live_commands() == []
    listed = ws.inspect("jobs", "--json").json()
    assert listed == []
