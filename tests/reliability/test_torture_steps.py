"""Step torture: ``kill -9`` a job of three-step templates until it completes.

Each item's template is three shell steps that pass captures along (step 1's output is
captured and used by step 2, step 2's by step 3), each writing a marker when it starts.
The coordinator is killed at random moments and resumed, as in ``test_torture.py``; the
database is read right after each kill. What continuing an attempt promises (SPEC
section 9) is then checked:

- no step recorded as succeeded at a kill ran again afterwards (its item continued after
  it), and the steps that ran again per kill are at most ``max_parallel`` times the
  template's length (a slot's steps whose records were still on their way);
- every item ends with the right value, built by the three steps across the kills, so
  captures came back on every continuation;
- ``verify`` is clean and no process of the job is left.

The short version (CI) makes 10 kills; ``--long`` makes 200.
``MAPWISE_TORTURE_SEED=N`` replays a seed (timing makes a replay close, not exact).
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers.jobs import Coordinator, Workspace
from helpers.processes import job_processes
from helpers.reliability import seed_from

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

TOTAL_ITEMS = 150
MAX_PARALLEL = 6
STEPS = 3
SHORT_KILLS = 10
LONG_KILLS = 200


def _mark(step: int) -> str:
    return f'echo "step ${{item.id}} {step} $$" >> "$M"'


TEMPLATE = [
    {"shell": f"{_mark(1)}; sleep ${{item.s}}; echo ${{item.id}}-one", "capture": "one"},
    {"shell": f'{_mark(2)}; sleep ${{item.s}}; echo "${{one}}-two"', "capture": "two"},
    {"shell": f'{_mark(3)}; sleep ${{item.s}}; printf "%s" "${{two}}" > "out/${{item.id}}"'},
]


def _step_runs(ws: Workspace) -> Counter[tuple[str, int]]:
    """How many times each (item, step) started so far, from the markers."""
    runs: Counter[tuple[str, int]] = Counter()
    for line in ws.marker_path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "step" and parts[2].isdigit():
            runs[(parts[1], int(parts[2]))] += 1
    return runs


def _done_steps(ws: Workspace, job: str) -> set[tuple[str, int]]:
    """(item, step) pairs the database records as succeeded: skipped by a continuation."""
    if not (ws.state_dir / "jobs" / job / "state.db").exists():
        return set()
    rows = ws.db(job).rows(
        "SELECT i.item_id, s.step_index FROM steps s JOIN attempts a ON a.id = s.attempt_id"
        " JOIN items i ON i.idx = a.item_idx WHERE s.phase = 'map' AND s.on_failure = 0"
        " AND s.error_kind IS NULL AND s.part IS NULL"
    )
    return {(r["item_id"], r["step_index"] + 1) for r in rows}


def _kill_at_random(ws: Workspace, coordinator: Coordinator, rng: random.Random) -> bool:
    """``kill -9`` the coordinator after a random moment; False if it ended first.

    A first run is killed only once a step has started, so that the job exists.
    """
    if ws.marker_offset() == 0:
        coordinator.wait_for(
            lambda: ws.marker_offset() > 0,
            what="a first step",
        )
    deadline = time.monotonic() + rng.uniform(0.25, 1.0)
    while time.monotonic() < deadline and coordinator.running():
        time.sleep(0.005)
    if not coordinator.running():
        return False
    returncode = coordinator.kill9()
    if returncode != -signal.SIGKILL:
        assert returncode == 0, coordinator.stderr
        return False
    return True


def _torture_job(ws: Workspace, job: str, rng: random.Random, max_kills: int) -> int:
    """Run the job, killing and resuming it up to ``max_kills`` times; check the promises.
    Returns the kills made."""
    kills: list[tuple[set[tuple[str, int]], Counter[tuple[str, int]]]] = []
    while True:
        first = not kills
        coordinator = ws.start_run(job) if first else ws.start_resume(job)
        if len(kills) >= max_kills or not _kill_at_random(ws, coordinator, rng):
            assert coordinator.wait() == 0, coordinator.stderr
            break
        kills.append((_done_steps(ws, job), _step_runs(ws)))
    final = _step_runs(ws)

    # no step on record as succeeded ran again, and few others did per kill
    for number, (done, runs_then) in enumerate(kills, 1):
        again = {key for key in done if final[key] > runs_then[key]}
        assert not again, f"kill {number}: recorded steps ran again: {again}"
    assert sum(final.values()) - TOTAL_ITEMS * STEPS <= MAX_PARALLEL * STEPS * len(kills)

    # every item's value was built by its three steps, captures carried across kills
    assert {r["status"] for r in ws.db(job).items()} == {"succeeded"}
    for path in (ws.root / "out").iterdir():
        assert path.read_text() == f"{path.name}-one-two", path.name
    assert len(list((ws.root / "out").iterdir())) == TOTAL_ITEMS
    assert job_processes(job) == []
    verified = ws.inspect("verify", job)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    return len(kills)


def test_kill9_never_reruns_a_recorded_step_and_captures_survive_every_continuation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, long_run: bool
) -> None:
    # Given jobs of three-step templates whose steps pass captures along, and a seed
    seed = seed_from("MAPWISE_TORTURE_SEED")
    budget = LONG_KILLS if long_run else SHORT_KILLS
    kills = jobs = 0
    while kills < budget:
        rng = random.Random(seed + jobs)
        folder = tmp_path / f"job{jobs}"
        folder.mkdir()
        ws = Workspace(folder)
        monkeypatch.chdir(ws.root)
        (ws.root / "out").mkdir()
        items = [
            {"id": f"i{n:03d}", "s": rng.choice(("0", "0", "0.01", "0.03"))}
            for n in range(TOTAL_ITEMS)
        ]
        ws.write_workflow(TEMPLATE, items=items, max_parallel=MAX_PARALLEL)
        try:
            # When its coordinator is killed with kill -9 at random moments, resumed each
            # time, until it completes
            # Then no recorded step ran again and every capture came back (_torture_job)
            kills += _torture_job(ws, f"steps-{os.getpid()}-{jobs}", rng, budget - kills)
        finally:
            ws.cleanup()
        jobs += 1
    print(
        f"step torture (seed {seed}): {kills} kill -9 rounds over {jobs} job(s) of "
        f"{TOTAL_ITEMS} items x {STEPS} steps on {MAX_PARALLEL} slots; recorded steps that "
        "ran again: 0; every capture came back; verify: clean"
    )
