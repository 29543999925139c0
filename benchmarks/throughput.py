"""B1 throughput against GNU parallel and xargs; B2 the cost of durability (disk vs RAM disk).

Every tool runs the same 2,000 items of ``true``, four at a time, one after another in
each round (so that drift of the machine hits all of them alike). mapwise runs as a user
runs it, ``mapwise run`` in a fresh state directory, and each of its runs is checked
afterwards: every item must be recorded succeeded in the job's database, with a succeeded
attempt row, once the process has exited. The same rounds run mapwise on a two-worker
Dask cluster too (``dask_throughput.py``), so that its figures share the machine's drift.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from context import Context
from dask_throughput import DaskRuns, dask_scale, dask_section, local_cluster
from harness import (
    fresh_dir,
    log,
    recorded_run,
    run_timed,
    write_items,
    write_workflow,
)
from results import Row, Section, at_least, at_most, paired_ratio_row

PARALLELISM = 4
SHM = Path("/dev/shm")


@dataclass(frozen=True)
class Inputs:
    """The items of one size, as each tool reads them, and mapwise's workflow."""

    folder: Path
    lines: Path  # one item per line, for xargs and parallel
    workflow: Path
    count: int


def make_inputs(folder: Path, count: int) -> Inputs:
    lines = folder / f"items-{count}.txt"
    lines.write_text("".join(f"{i}\n" for i in range(count)))
    write_items(folder / f"items-{count}.json", count, objects=False)
    workflow = write_workflow(
        folder / f"b1-{count}.yml",
        "b1",
        "true",
        max_parallel=PARALLELISM,
        items=f"items-{count}.json",
    )
    return Inputs(folder, lines, workflow, count)


def ensure_parallel() -> str | None:
    """GNU parallel, installed with apt-get when missing; a note when it cannot be."""
    if shutil.which("parallel"):
        return None
    log("GNU parallel is missing: apt-get update && apt-get install -y parallel")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "parallel"]):
        try:
            subprocess.run([*prefix, *argv], capture_output=True, check=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as error:
            return f"GNU parallel could not be installed ({error}); its figures are skipped"
    return None if shutil.which("parallel") else "GNU parallel is still missing after apt-get"


def run_xargs(inputs: Inputs) -> float:
    """Seconds for ``xargs -P4 -n1 true`` over the items (``true`` exec'd directly)."""
    argv = ["xargs", f"-P{PARALLELISM}", "-n1", "true"]
    done = run_timed(argv, inputs.folder / "xargs.out", stdin=inputs.lines)
    if done.code != 0:
        raise RuntimeError(f"xargs exited {done.code}")
    return done.wall


def run_parallel(inputs: Inputs) -> float:
    """Seconds for ``parallel -j4 --joblog`` over the items; its joblog must list them all."""
    joblog = inputs.folder / "parallel.joblog"
    joblog.unlink(missing_ok=True)
    argv = ["parallel", f"-j{PARALLELISM}", "--joblog", str(joblog), "true", "::::"]
    done = run_timed([*argv, str(inputs.lines)], inputs.folder / "parallel.out")
    rows = joblog.read_text().splitlines()[1:]
    failed = [row for row in rows if row.split("\t")[6] != "0"]
    if done.code != 0 or len(rows) != inputs.count or failed:
        raise RuntimeError(f"parallel exited {done.code} with {len(rows)} joblog rows")
    return done.wall


def run_mapwise(
    inputs: Inputs, state_dir: Path, executor: tuple[str, ...] = ()
) -> tuple[float, int]:
    """Seconds for ``mapwise run``, and how many items its database then shows succeeded.

    ``executor`` is added to the command line (``--executor dask --scheduler ...``).
    """
    output = inputs.folder / ("mapwise-dask.out" if executor else "mapwise.out")
    return recorded_run(inputs.workflow, state_dir, "b1", output, executor)


def rate_row(bench: str, measure: str, walls: list[float], count: int) -> Row:
    """Items per second of each run."""
    return Row(bench, measure, tuple(count / wall for wall in walls), "items/s")


@dataclass
class Walls:
    """Every run's seconds, per tool."""

    xargs: list[float]
    parallel: list[float]
    disk: list[float]
    shm: list[float]
    recorded: list[int]
    shm_again: list[float] = field(default_factory=list)  # B2's noise floor


def measure_rounds(
    ctx: Context, inputs: Inputs, dask: DaskRuns, *, peers: bool, shm: bool, parallel: bool
) -> Walls:
    """``ctx.runs`` rounds, each tool once per round, after one small untimed warm-up each.

    ``dask`` runs mapwise on its cluster right after the local run, while it is usable.
    """
    walls = Walls([], [], [], [], [])
    warm = make_inputs(fresh_dir(inputs.folder / "warm-up"), 50)
    run_mapwise(warm, inputs.folder / "state-warm")
    dask.measure(
        lambda args: run_mapwise(warm, inputs.folder / "state-warm", args), "warm-up", timed=False
    )
    if peers:
        run_xargs(warm)
        if parallel:
            run_parallel(warm)
    shm_state = SHM / f"mapwise-bench-{os.getpid()}"
    for round_no in range(1, ctx.runs + 1):
        if peers:
            walls.xargs.append(run_xargs(inputs))
            if parallel:
                walls.parallel.append(run_parallel(inputs))
        wall, recorded = run_mapwise(inputs, inputs.folder / "state")
        walls.disk.append(wall)
        walls.recorded.append(recorded)
        dask.measure(
            lambda args: run_mapwise(inputs, inputs.folder / "state-dask", args),
            f"round {round_no}",
        )
        if shm:
            wall, recorded = run_mapwise(inputs, shm_state)
            walls.shm.append(wall)
            walls.recorded.append(recorded)
            wall, recorded = run_mapwise(inputs, shm_state)  # the same run again
            walls.shm_again.append(wall)
            walls.recorded.append(recorded)
        log(f"  round {round_no}: {_round_text(walls, dask, inputs.count)}")
    return walls


def _round_text(walls: Walls, dask: DaskRuns, count: int) -> str:
    parts = [
        f"{name} {count / values[-1]:.0f}/s"
        for name, values in (
            ("xargs", walls.xargs),
            ("parallel", walls.parallel),
            ("mapwise", walls.disk),
            ("mapwise-dask", dask.walls),
            ("mapwise-shm", walls.shm),
        )
        if values
    ]
    return ", ".join(parts)


def throughput(ctx: Context, *, b1: bool, b2: bool) -> Section:
    """B1 and/or B2 (they share mapwise's runs with the state on disk)."""
    section = Section()
    count = ctx.sizes.b1_items
    inputs = make_inputs(ctx.workspace("b1"), count)
    problem = ensure_parallel() if b1 else None
    if problem:
        section.notes.append(problem)
    use_shm = b2 and SHM.is_dir()
    if b2 and not use_shm:
        section.notes.append("B2 skipped: this machine has no /dev/shm")
    log(f"B1/B2: {count:,} items of `true`, parallelism {PARALLELISM}, {ctx.runs} round(s)")
    with local_cluster(enabled=b1) as dask:
        walls = measure_rounds(ctx, inputs, dask, peers=b1, shm=use_shm, parallel=problem is None)
    disk = rate_row("B1", "mapwise run, state on disk", walls.disk, count)
    recorded = (float(min(walls.recorded)),)
    measure = "items recorded succeeded after each mapwise run (fewest)"
    section.rows.append(Row("B1", measure, recorded, "count", at_least(count)))
    if b1:
        section.rows += b1_rows(inputs, walls, disk)
        on_dask = dask_section(dask, disk, count)
        section.rows += on_dask.rows
        section.notes += on_dask.notes
        scale = dask_scale(ctx)  # 8 workers, on a cluster of its own (dask_throughput.py)
        section.rows += scale.rows
        section.notes += scale.notes
    if use_shm:
        section.rows += b2_rows(walls, disk, count)
    return section


def b1_rows(inputs: Inputs, walls: Walls, disk: Row) -> list[Row]:
    count = inputs.count
    xargs = rate_row("B1", f"xargs -P{PARALLELISM} -n1 true", walls.xargs, count)
    parallel = rate_row("B1", f"GNU parallel -j{PARALLELISM} --joblog", walls.parallel, count)
    rows = [xargs, parallel, disk]
    rows.append(paired_ratio_row("B1", "mapwise / GNU parallel", disk, parallel, at_least(2.5)))
    rows.append(paired_ratio_row("B1", "mapwise / xargs", disk, xargs, at_least(0.6)))
    return rows


def slower_by(walls: list[float], against: list[float]) -> tuple[float, ...]:
    """How much longer each run of ``walls`` took than its round's run of ``against``, in %."""
    return tuple((wall / other - 1.0) * 100.0 for wall, other in zip(walls, against, strict=True))


def b2_rows(walls: Walls, disk: Row, count: int) -> list[Row]:
    """/dev/shm against disk, round by round (each round runs both, one after the other),
    judged on every round: durability must not cost more than 5 % in any run."""
    shm = rate_row("B2", "mapwise run, state on /dev/shm", walls.shm, count)
    if len(walls.shm) == len(walls.disk):
        slowdown = slower_by(walls.disk, walls.shm)
        note = "within each round"
    else:
        disk_median, shm_median = disk.median, shm.median
        slowdown = ((shm_median / disk_median - 1.0) * 100.0,) if disk_median and shm_median else ()
        note = "ratio of the medians"
    target = at_most(5.0, every=True)
    rows = [shm, Row("B2", "disk slower than /dev/shm by", slowdown, "%", target, note)]
    if len(walls.shm_again) == len(walls.shm):
        again = slower_by(walls.shm_again, walls.shm)
        measure = "/dev/shm run twice: the second slower than the first by"
        rows.append(Row("B2", measure, again, "%", None, "the noise floor, within each round"))
    return rows
