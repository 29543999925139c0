"""B3 resume and listing: resume to the first dispatch, ``jobs`` over many jobs, ``status``.

The big job is synthetic (benchmarks/synth.py): N items, half succeeded, some in the DLQ.
Its one shell step appends ``date +%s.%N`` to a file when the first item starts, so the
time to the first dispatch is that timestamp minus the moment just before the launch of
``mapwise resume``; the resume is then stopped with SIGINT. Each run resumes a fresh copy.
The listing's 1,000 jobs are copies of one small real job (3 items, one in the DLQ, so it
is resumable), each with its job id rewritten in its database.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from context import Context
from harness import (
    FIRST_STAMP,
    Launched,
    bench_env,
    copy_job,
    log,
    mapwise_argv,
    run_timed,
    wait_first_stamp,
    write_items,
    write_workflow,
)
from results import Row, Section, at_most

BIG_JOB = "big"
SMALL_JOB = "small-0000"


@dataclass
class ResumeFigures:
    """Per run: seconds to the first dispatch, SIGINT to exit, peak memory (MB)."""

    first: list[float] = field(default_factory=list)
    stop: list[float] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)


def resume_once(template: Path, job_id: str, folder: Path, settle: float) -> Launched:
    """Resume a fresh copy of the job; return once its first item started plus ``settle``."""
    state = copy_job(template, folder / "state", job_id)
    stamps = folder / "stamps"
    stamps.unlink(missing_ok=True)
    argv = mapwise_argv("resume", job_id, "--state-dir", str(state))
    launched = Launched(argv, folder / "resume.out", env=bench_env(stamps))
    first = wait_first_stamp(stamps, launched, timeout=600)
    if first is None:
        launched.interrupt()
        launched.finish(60)
        raise RuntimeError(f"the resume dispatched nothing: see {launched.output}")
    launched.first_dispatch = first - launched.started_wall
    time.sleep(settle)
    return launched


def measure_resume(
    ctx: Context, template: Path, job_id: str, folder: Path, *, settle: float = 0.0
) -> ResumeFigures:
    """``ctx.runs`` resumes of copies of the job, each stopped by SIGINT after its first item."""
    figures = ResumeFigures()
    for _ in range(ctx.runs):
        launched = resume_once(template, job_id, folder, settle)
        launched.interrupt()
        done = launched.finish(900, watch_memory=True)
        if done.code != 130:
            log(f"  note: the resume exited {done.code} after SIGINT (130 expected)")
        figures.first.append(launched.first_dispatch or 0.0)
        figures.stop.append(done.after_interrupt or 0.0)
        figures.peak.append(done.peak_mb or 0.0)
        log(f"  resume: first item after {figures.first[-1]:.3f} s, stop {figures.stop[-1]:.1f} s")
        shutil.rmtree(folder / "state", ignore_errors=True)
    return figures


def timed_command(ctx: Context, folder: Path, name: str, *args: str) -> list[float]:
    """Wall seconds of ``mapwise ARGS`` (process start-up included), once per run."""
    walls = []
    for _ in range(ctx.runs):
        done = run_timed(mapwise_argv(*args), folder / f"{name}.out")
        if done.code != 0:
            raise RuntimeError(f"mapwise {' '.join(args)} exited {done.code}")
        walls.append(done.wall)
    return walls


def small_job(folder: Path) -> Path:
    """A real 3-item job with one item in the DLQ (resumable); its state directory."""
    write_items(folder / "items.json", 3, objects=False)
    workflow = write_workflow(
        folder / "small.yml", "small", "test ${item} -ne 1", max_parallel=1, items="items.json"
    )
    state = folder / "jobs-state"
    argv = mapwise_argv("run", str(workflow), "--state-dir", str(state), "--job-id", SMALL_JOB)
    done = run_timed([*argv, "--quiet"], folder / "small.out")
    if done.code != 1:
        raise RuntimeError(f"the small job exited {done.code} (1 expected: one item in the DLQ)")
    return state


def clone_jobs(state: Path, count: int) -> None:
    """Copies of the small job, each with its own id in its database."""
    jobs = state / "jobs"
    source = jobs / SMALL_JOB
    for number in range(1, count):
        job_id = f"small-{number:04d}"
        target = jobs / job_id
        shutil.copytree(source, target)
        conn = sqlite3.connect(target / "state.db", isolation_level=None)
        try:
            conn.execute("UPDATE job SET job_id = ?", (job_id,))
        finally:
            conn.close()


def listed_jobs(state: Path, folder: Path) -> int:
    """How many jobs ``mapwise jobs --json`` lists (the check that the timing saw them all)."""
    out = folder / "jobs.json"
    done = run_timed(mapwise_argv("jobs", "--json", "--state-dir", str(state)), out)
    if done.code != 0:
        return 0
    text = out.read_text()
    return len(json.loads(text[text.index("[") :]))


def listing(ctx: Context) -> Section:
    """B3: start-up, resume to first dispatch, jobs over many jobs, status of the big job."""
    section = Section()
    sizes = ctx.sizes
    folder = ctx.workspace("b3")
    counts = (sizes.b3_items, sizes.b3_succeeded, sizes.b3_dlq)
    template = ctx.synthetic(BIG_JOB, counts, FIRST_STAMP, 4)
    log(f"B3: start-up, resume, jobs and status, {ctx.runs} run(s) each")
    startup = timed_command(ctx, folder, "version", "--version")
    section.rows.append(Row("B3", "mapwise --version (process start-up)", tuple(startup), "s"))

    resumed = measure_resume(ctx, template, BIG_JOB, folder)
    items = f"{sizes.b3_items:,} items, {sizes.b3_succeeded:,} done, {sizes.b3_dlq:,} in DLQ"
    measure = f"resume ({items}): launch to first item started"
    section.rows.append(Row("B3", measure, tuple(resumed.first), "s", at_most(0.3)))
    section.rows.append(Row("B3", "resume: SIGINT to exit", tuple(resumed.stop), "s"))

    state = small_job(folder)
    clone_jobs(state, sizes.b3_jobs)
    listed = listed_jobs(state, folder)
    walls = timed_command(ctx, folder, "jobs", "jobs", "--state-dir", str(state))
    measure = f"jobs over {sizes.b3_jobs:,} resumable jobs"
    section.rows.append(Row("B3", measure, tuple(walls), "s", at_most(1.0), f"{listed:,} listed"))
    walls = timed_command(ctx, folder, "status", "status", BIG_JOB, "--state-dir", str(template))
    section.rows.append(
        Row("B3", f"status of the {sizes.b3_items:,}-item job", tuple(walls), "s", at_most(0.3))
    )
    shutil.rmtree(state, ignore_errors=True)
    return section
