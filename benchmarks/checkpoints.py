"""B5 checkpoints: the cost of one write, and whether writing them stalls dispatch.

The write is timed directly through the library (``write_checkpoint`` on a copy of the
synthetic job's database, as the checkpoint thread calls it). The stall is measured on a
running job: a synthetic job with many items already succeeded (so each checkpoint is
large) is resumed to run its last items, each of which appends ``date +%s.%N`` to a file
when it starts, once with checkpoints forced every 0.5 s and once with them off. The
figure judged is the largest gap between two consecutive item starts over the whole run
with checkpoints on (whatever caused it); the gaps that overlap a checkpoint's window
(from just before its header's time to 0.5 s after its file's last write, which covers
the fsync, rename, pruning and WAL checkpoint that follow) are shown beside it.
"""

from __future__ import annotations

import gzip
import itertools
import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from context import Context
from harness import (
    EVERY_STAMP,
    FIRST_STAMP,
    Launched,
    bench_env,
    copy_job,
    fresh_dir,
    log,
    mapwise_argv,
    read_stamps,
)
from listing import BIG_JOB
from results import Row, Section, at_most

STALL_JOB = "stall"
PARALLELISM = 4
BEFORE_START = 0.05  # seconds of a checkpoint's window before its header's time
AFTER_WRITE = 0.5  # ... and after its file's last write (fsync, rename, prune, WAL checkpoint)
OFTEN = {"MAPWISE_CHECKPOINT_SECONDS": "0.5", "MAPWISE_CHECKPOINT_KEEP": "100000"}
OFF = {"MAPWISE_CHECKPOINT_SECONDS": "1000000", "MAPWISE_CHECKPOINT_ITEMS": "1000000000"}


def time_writes(ctx: Context, template: Path, folder: Path) -> tuple[list[float], int]:
    """Seconds of each ``write_checkpoint`` on a copy of the job's database, and the file size."""
    from mapwise.store import db
    from mapwise.store.checkpoint import write_checkpoint

    database = folder / "state.db"
    shutil.copyfile(template / "jobs" / BIG_JOB / "state.db", database)
    conn = db.connect(database)
    walls, size = [], 0
    try:
        for sequence in range(1, ctx.runs + 1):
            started = time.perf_counter()
            path = write_checkpoint(conn, folder / "checkpoints", BIG_JOB, sequence)
            walls.append(time.perf_counter() - started)
            size = path.stat().st_size
    finally:
        conn.close()
    return walls, size


@dataclass(frozen=True)
class Window:
    """One checkpoint written during a run: its snapshot's start and its file's last write."""

    started: float
    written: float

    def overlaps(self, before: float, after: float) -> bool:
        return before < self.written + AFTER_WRITE and after > self.started - BEFORE_START


def checkpoint_windows(folder: Path) -> list[Window]:
    """Every checkpoint in ``folder``, from its header's time and its file's mtime."""
    windows = []
    for path in sorted(folder.glob("ckpt-*.ckpt")):
        with gzip.open(path, "rt") as handle:
            header = json.loads(handle.readline())
        windows.append(Window(float(header["created_at"]), path.stat().st_mtime))
    return windows


def largest_gaps(starts: list[float], windows: list[Window]) -> tuple[float, float]:
    """The largest gap between consecutive starts overall, and among those near a checkpoint."""
    largest = near = 0.0
    for before, after in itertools.pairwise(starts):
        gap = after - before
        largest = max(largest, gap)
        if any(window.overlaps(before, after) for window in windows):
            near = max(near, gap)
    return largest, near


@dataclass
class StallFigures:
    """Per run: gaps in milliseconds, checkpoints written, their median write time (s)."""

    often: list[float] = field(default_factory=list)
    near: list[float] = field(default_factory=list)
    off: list[float] = field(default_factory=list)
    written: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)


def resume_to_end(template: Path, folder: Path, knobs: dict[str, str]) -> list[float]:
    """Resume a fresh copy of the stall job to its end; every item's start time."""
    state = copy_job(template, folder / "state", STALL_JOB)
    stamps = folder / "stamps"
    stamps.unlink(missing_ok=True)
    argv = mapwise_argv("resume", STALL_JOB, "--state-dir", str(state), "--quiet")
    done = Launched(argv, folder / "resume.out", env=bench_env(stamps, knobs)).finish(3600)
    if done.code != 0:
        raise RuntimeError(f"the stall job's resume exited {done.code}: see {done.output}")
    return read_stamps(stamps)


def stall_round(template: Path, folder: Path, figures: StallFigures) -> None:
    """One run with checkpoints every 0.5 s, one with them off; their figures appended."""
    starts = resume_to_end(template, folder, OFTEN)
    found = checkpoint_windows(folder / "state" / "jobs" / STALL_JOB / "checkpoints")
    windows = [window for window in found if starts[0] < window.started < starts[-1]]
    largest, near = largest_gaps(starts, windows)
    figures.often.append(largest * 1000)
    figures.near.append(near * 1000)
    figures.written.append(float(len(windows)))
    costs = [window.written - window.started for window in windows]
    figures.cost.append(statistics.median(costs) if costs else 0.0)
    shutil.rmtree(folder / "state", ignore_errors=True)
    starts = resume_to_end(template, folder, OFF)
    figures.off.append(largest_gaps(starts, [])[0] * 1000)
    shutil.rmtree(folder / "state", ignore_errors=True)
    log(
        f"  stall: {len(windows)} checkpoints, largest gap {largest * 1000:.1f} ms "
        f"({near * 1000:.1f} ms near a checkpoint); {figures.off[-1]:.1f} ms with them off"
    )


def stall_rows(figures: StallFigures, job: str) -> list[Row]:
    often = "largest gap between item starts, checkpoints every 0.5 s"
    return [
        Row("B5", often, tuple(figures.often), "ms", at_most(50.0), job),
        Row("B5", "... of those, largest overlapping a checkpoint", tuple(figures.near), "ms"),
        Row("B5", "largest gap between item starts, checkpoints off", tuple(figures.off), "ms"),
        Row("B5", "checkpoints written while items ran", tuple(figures.written), "count"),
        Row("B5", "one checkpoint inside the running job", tuple(figures.cost), "s"),
    ]


def checkpoints(ctx: Context) -> Section:
    """B5: one checkpoint's write time, and the dispatch gaps while checkpoints are written."""
    section = Section()
    sizes = ctx.sizes
    folder = ctx.workspace("b5")
    big = ctx.synthetic(BIG_JOB, (sizes.b3_items, sizes.b3_succeeded, sizes.b3_dlq), FIRST_STAMP, 4)
    log(f"B5: checkpoint writes of {sizes.b3_items:,} items, {ctx.runs} run(s)")
    walls, size = time_writes(ctx, big, fresh_dir(folder / "write"))
    measure = f"write_checkpoint of {sizes.b3_items:,} items"
    note = f"{size / 1e6:.1f} MB file"
    section.rows.append(Row("B5", measure, tuple(walls), "s", at_most(1.0), note))

    total, run = sizes.b5_items, sizes.b5_run_items
    stall = ctx.synthetic(STALL_JOB, (total, total - run, 0), EVERY_STAMP, PARALLELISM)
    log(f"B5: {run:,} items of a {total:,}-item job, checkpoints every 0.5 s vs off")
    figures = StallFigures()
    stall_folder = fresh_dir(folder / "stall")
    for _ in range(ctx.runs):
        stall_round(stall, stall_folder, figures)
    section.rows += stall_rows(
        figures, f"last {run:,} of {total:,} items, max_parallel {PARALLELISM}"
    )
    return section
