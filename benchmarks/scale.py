"""B4 scale: a job of 1,000,000 items, its coordinator's memory and its resume.

Running a million items of ``true`` takes over an hour, so the run is measured over its
first items only: ``mapwise run`` of a setup-less workflow reading a 1,000,000-item JSON
file (objects ``{"n": i}``), max_parallel 8, stopped by SIGINT once the job's database shows
the chosen number of items succeeded. The time from the launch to the first item's start
is the cost of reading and freezing the million items. Peak memory is the coordinator's
``VmHWM``, polled until it exits: its whole life, the stop included. The resume
is of a synthetic job (synth.py) with half of the items succeeded.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from context import Context
from harness import (
    FIRST_STAMP,
    Launched,
    bench_env,
    completed_items,
    fresh_dir,
    log,
    mapwise_argv,
    wait_first_stamp,
    wait_until,
    write_items,
    write_workflow,
)
from listing import measure_resume
from results import Row, Section, at_most

PARALLELISM = 8
JOB = "scale"
MEMORY_LIMIT_MB = 100.0  # issue 15 (it was 300 MB before)
STOP_LIMIT_S = 1.0  # SIGINT to exit, issue 15


def run_first_items(folder: Path, workflow: Path, items: int) -> dict[str, float]:
    """One ``mapwise run``, stopped once ``items`` succeeded: its figures by name."""
    state = fresh_dir(folder / "state")
    stamps = folder / "stamps"
    stamps.unlink(missing_ok=True)
    argv = mapwise_argv("run", str(workflow), "--state-dir", str(state), "--job-id", JOB, "-q")
    launched = Launched(argv, folder / "run.out", env=bench_env(stamps), cwd=folder)
    first = wait_first_stamp(stamps, launched, timeout=1800)
    if first is None:
        launched.interrupt()
        launched.finish(120)
        raise RuntimeError(f"the run dispatched nothing: see {launched.output}")
    frozen = first - launched.started_wall
    freeze_peak = launched.vm_hwm_mb() or 0.0

    def enough() -> bool:
        return completed_items(state, JOB) >= items

    reached = wait_until(enough, launched, timeout=7200, every=0.25)
    elapsed = time.time() - first
    done_items = completed_items(state, JOB)
    running = launched.vm_rss_mb() or 0.0
    launched.interrupt()
    done = launched.finish(1800, watch_memory=True)
    if not reached or done.code != 130:
        log(f"  note: run exited {done.code}, {done_items:,} items done (see {done.output})")
    shutil.rmtree(state, ignore_errors=True)
    return {
        "frozen": frozen,
        "rate": done_items / elapsed if elapsed > 0 else 0.0,
        "freeze_peak": freeze_peak,
        "running": running,
        "peak": done.peak_mb or 0.0,
        "stop": done.after_interrupt or 0.0,
    }


def measure_run(ctx: Context, folder: Path) -> dict[str, list[float]]:
    sizes = ctx.sizes
    write_items(folder / "items.json", sizes.b4_items)
    workflow = write_workflow(
        folder / "scale.yml", "scale", FIRST_STAMP, max_parallel=PARALLELISM, items="items.json"
    )
    figures: dict[str, list[float]] = {}
    for _ in range(ctx.runs):
        one = run_first_items(folder, workflow, sizes.b4_run_items)
        for name, value in one.items():
            figures.setdefault(name, []).append(value)
        log(
            f"  run: first item after {one['frozen']:.2f} s, {one['rate']:.0f} items/s, "
            f"peak {one['peak']:.0f} MB, stop {one['stop']:.1f} s"
        )
    return figures


def scale(ctx: Context) -> Section:
    """B4: the run's freeze time and memory, then the half-done resume."""
    section = Section()
    sizes = ctx.sizes
    folder = ctx.workspace("b4")
    total, ran = sizes.b4_items, sizes.b4_run_items
    log(f"B4: {total:,} items, max_parallel {PARALLELISM}, {ctx.runs} run(s) of {ran:,} items")
    run = measure_run(ctx, folder)
    section.rows += [
        Row(
            "B4",
            f"run: launch to first item (reads and freezes {total:,} items)",
            tuple(run["frozen"]),
            "s",
            at_most(3.0),
        ),
        Row("B4", f"run: items/s over the first {ran:,} items", tuple(run["rate"]), "items/s"),
        Row("B4", "run: coordinator peak RSS at the first item", tuple(run["freeze_peak"]), "MB"),
        Row("B4", f"run: coordinator RSS after {ran:,} items", tuple(run["running"]), "MB"),
        Row(
            "B4",
            "run: coordinator peak RSS, stop included",
            tuple(run["peak"]),
            "MB",
            at_most(MEMORY_LIMIT_MB),
        ),
        Row("B4", "run: SIGINT to exit", tuple(run["stop"]), "s", at_most(STOP_LIMIT_S)),
    ]

    half = total // 2
    template = ctx.synthetic(JOB, (total, half, 0), FIRST_STAMP, PARALLELISM)
    resumed = measure_resume(ctx, template, JOB, fresh_dir(folder / "resume"), settle=3.0)
    section.rows += [
        Row(
            "B4",
            f"resume ({half:,} of {total:,} done): launch to first item started",
            tuple(resumed.first),
            "s",
            at_most(2.0),
        ),
        Row(
            "B4",
            "resume: coordinator peak RSS (first item + 3 s, stop included)",
            tuple(resumed.peak),
            "MB",
            at_most(MEMORY_LIMIT_MB),
        ),
        Row("B4", "resume: SIGINT to exit", tuple(resumed.stop), "s", at_most(STOP_LIMIT_S)),
    ]
    return section
