"""B1 on a Dask cluster (issue 5): the same items through ``--executor dask``, beside the pool.

One two-worker ``LocalCluster`` (2 worker processes of 2 threads: 4 items at once, as
many as ``max_parallel``) is started once for the B1 section, on 127.0.0.1, and closed at
its end whatever happens. Each round runs ``mapwise run ... --executor dask`` right after
the local run, over the same items in a fresh state directory, and checks the job's
database the same way. Both run on one machine, so the ratio local pool / Dask is what
the Dask executor costs per item (one call to the slot's actor on a worker, pickling the
attempt and its result, the slot's thread there, the answer back), not what a real cluster
gains by having more machines.

The Dask rows have no target, and a Dask run that breaks is a note: it never takes the
B1 and B2 figures down with it.

The scale figure (``dask_scale``) runs after those rounds on a cluster of its own: eight
one-thread workers, 20,000 items of ``sleep 0.01`` (2,000 with ``--quick``), mapwise
with ``max_parallel`` 8 against a bare ``client.map`` of the same command (one
``subprocess.run(["sh", "-c", "sleep 0.01"])`` per item, every item submitted at once),
one after the other in each round. Its target: mapwise's items/s at least 0.7 times the
bare map's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from context import Context
from harness import (
    log,
    recorded_run,
    write_items,
    write_workflow,
)
from results import Row, Section, at_least, at_most, paired_ratio_row

WORKERS = 2
THREADS_PER_WORKER = 2
START_TIMEOUT = 120.0  # seconds for the cluster's workers to come up on a busy machine

SCALE_WORKERS = 8  # one thread each: mapwise runs as many items at once
SCALE_ITEMS = 20_000
SCALE_QUICK_ITEMS = 2_000
SCALE_COMMAND = "sleep 0.01"
SCALE_TARGET = 0.7  # mapwise's items/s over the bare client.map's
OVERHEAD_TARGET_MS = 3.0  # issue 15: Dask's extra wall time per item, 4 in flight

# runs mapwise with extra arguments: (wall seconds, items recorded succeeded)
Runner = Callable[[tuple[str, ...]], tuple[float, int]]


def dask_missing() -> str | None:
    """A note when Dask's ``distributed`` is not importable here (the ``dask`` extra)."""
    try:
        import distributed  # noqa: F401
    except ImportError as error:
        return (
            f"B1 on Dask skipped: distributed is not importable ({error}); "
            "install the extra with pip install 'mapwise[dask]'"
        )
    return None


@dataclass
class DaskRuns:
    """The Dask side of the B1 rounds: the scheduler's address while it is usable."""

    scheduler: str | None = None
    walls: list[float] = field(default_factory=list)
    recorded: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def give_up(self, what: str, error: BaseException) -> None:
        """A broken Dask run: noted, and no more Dask runs in this section."""
        self.notes.append(f"B1 on Dask stopped: {what}: {type(error).__name__}: {error}")
        self.scheduler = None

    def measure(self, run: Runner, what: str, *, timed: bool = True) -> None:
        """One ``run`` with the executor's arguments, kept unless it is the warm-up.

        ``run`` is the local runs' own function (its checks included), given the extra
        arguments; its error ends the Dask runs, not the section.
        """
        if self.scheduler is None:
            return
        try:
            wall, recorded = run(("--executor", "dask", "--scheduler", self.scheduler))
        except Exception as error:
            self.give_up(what, error)
            return
        if timed:
            self.walls.append(wall)
            self.recorded.append(recorded)


def _cluster(workers: int, threads: int) -> Any:
    """A LocalCluster of worker processes on 127.0.0.1, without a dashboard.

    Starting its nannies sets variables in this process's own environment for the
    workers they spawn (``MALLOC_TRIM_THRESHOLD_=65536``, ``PYTHONHASHSEED``,
    ``OMP_NUM_THREADS=1`` ...), and every tool measured after would inherit them: with
    that malloc setting B4's launch to the first item took 3.4 s instead of 2.5 s. The
    environment is put back as it was once the workers run.
    """
    from distributed import LocalCluster

    before = dict(os.environ)
    try:
        return LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
            timeout=START_TIMEOUT,
        )
    finally:
        restore_environment(before)


def restore_environment(before: dict[str, str]) -> None:
    """Make ``os.environ`` exactly ``before`` again (added, changed and removed names)."""
    for name in set(os.environ) - set(before):
        del os.environ[name]
    os.environ.update(before)


@contextlib.contextmanager
def local_cluster(enabled: bool) -> Iterator[DaskRuns]:
    """A two-worker LocalCluster for the section, closed on the way out even on errors.

    The scheduler runs in this process's event-loop thread and the workers in processes of
    their own; between the Dask runs they idle (heartbeats only) during the other tools'.
    """
    runs = DaskRuns()
    problem = dask_missing() if enabled else None
    if problem:
        runs.notes.append(problem)
    if not enabled or problem:
        yield runs
        return
    cluster = None
    try:
        cluster = _cluster(WORKERS, THREADS_PER_WORKER)
        runs.scheduler = str(cluster.scheduler_address)
        runs.notes.append(describe())
    except Exception as error:
        runs.give_up("the LocalCluster did not start", error)
    try:
        yield runs
    finally:
        if cluster is not None:
            try:
                cluster.close()
            except Exception as error:  # the figures are taken: a note, not a failure
                runs.notes.append(f"closing the Dask cluster failed: {error!r}")


def describe() -> str:
    """What the Dask rows ran on, since the machine table does not say it."""
    from importlib.metadata import version

    return (
        f"B1 on Dask: distributed {version('distributed')}, a LocalCluster of {WORKERS} worker "
        f"processes x {THREADS_PER_WORKER} threads on 127.0.0.1, started once for the section "
        "(idle while the other tools ran); each run is a fresh `mapwise run` process, so "
        "importing distributed and connecting to the scheduler are in its time"
    )


def dask_section(runs: DaskRuns, local: Row, count: int) -> Section:
    """The Dask rows beside ``local`` (the pool's items/s), and the notes that explain them."""
    section = Section(notes=list(runs.notes))
    if runs.walls:
        section.rows = dask_rows(runs, local, count)
        note = ratio_note(local, section.rows[0])
        if note:
            section.notes.append(note)
    return section


def dask_rows(runs: DaskRuns, local: Row, count: int) -> list[Row]:
    """Items per second on Dask, the check of its runs, and what Dask costs per item."""
    dask = Row(
        "B1",
        f"mapwise run --executor dask, {WORKERS}-worker LocalCluster",
        tuple(count / wall for wall in runs.walls),
        "items/s",
    )
    checked = Row(
        "B1",
        "items recorded succeeded after each Dask run (fewest)",
        (float(min(runs.recorded)),),
        "count",
        at_least(count),
    )
    ratio = paired_ratio_row("B1", "mapwise local pool / Dask (same machine)", local, dask, None)
    return [dask, checked, ratio, overhead_row(local, dask)]


def overhead_row(local: Row, dask: Row) -> Row:
    """The ratio in time: Dask's extra wall seconds per item, round by round.

    1/rate is the run's wall time per item, so the difference is what each item costs more
    on Dask with ``max_parallel`` in flight (a run's fixed cost, spread over its items, too).
    Each round ran both side by side; without as many of each, the two medians are used.
    """
    if local.samples and len(local.samples) == len(dask.samples) and all(dask.samples):
        pairs = zip(local.samples, dask.samples, strict=True)
        samples = tuple((1.0 / ours - 1.0 / theirs) * 1000.0 for theirs, ours in pairs)
        note = "1/Dask - 1/local within each round, max_parallel items in flight"
    else:
        samples = ()
        if local.median and dask.median:
            samples = ((1.0 / dask.median - 1.0 / local.median) * 1000.0,)
        note = "1/Dask - 1/local of the medians, max_parallel items in flight"
    target = at_most(OVERHEAD_TARGET_MS)
    return Row("B1", "extra wall time per item on Dask", samples, "ms", target, note)


def ratio_note(local: Row, dask: Row) -> str | None:
    """What the ratio means, in this run's numbers."""
    if not (local.median and dask.median):
        return None
    ratio = local.median / dask.median
    return (
        f"B1 local pool / Dask = {ratio:.2f}x (a Dask run took {ratio:.2f} times as long): "
        "both ran on this machine with 4 items in flight, so the ratio is Dask's per-item "
        "overhead (one call to the slot's actor on a worker: the attempt pickled there, run "
        "in the slot's thread, its result sent back) against items that do nothing (`true`); "
        "it shrinks as items take longer, and says nothing of what more machines would add"
    )


# -- the 8-worker scale figure ------------------------------------------------------------


def run_scale_command(_: int) -> int:
    """One bare item on a worker: the command mapwise runs, with nothing around it."""
    return subprocess.run(["sh", "-c", SCALE_COMMAND], check=False).returncode


def bare_map(client: Any, count: int) -> float:
    """Seconds for ``client.map`` of ``count`` items, all submitted at once, to end."""
    started = time.perf_counter()
    futures = client.map(run_scale_command, range(count), pure=False)
    codes = client.gather(futures)  # the exit statuses: small, fetched together at the end
    wall = time.perf_counter() - started
    failed = sum(1 for code in codes if code)
    client.cancel(futures)
    if failed:
        raise RuntimeError(f"{failed} bare items failed")
    return wall


def scale_mapwise(folder: Path, scheduler: str, count: int) -> tuple[float, int]:
    """Seconds for ``mapwise run --executor dask`` over the items, and how many its
    database then shows succeeded."""
    executor = ("--executor", "dask", "--scheduler", scheduler)
    return recorded_run(
        folder / "scale.yml", folder / "state", "scale", folder / "mapwise-scale.out", executor
    )


def dask_scale(ctx: Context) -> Section:
    """mapwise on 8 Dask workers against a bare ``client.map`` of the same items."""
    section = Section()
    problem = dask_missing()
    if problem:
        section.notes.append(problem.replace("B1 on Dask", "The Dask scale figure"))
        return section
    count = SCALE_QUICK_ITEMS if ctx.quick else SCALE_ITEMS
    folder = ctx.workspace("dask-scale")
    write_items(folder / "items.json", count, objects=False)
    write_workflow(
        folder / "scale.yml",
        "scale",
        SCALE_COMMAND,
        max_parallel=SCALE_WORKERS,
        items="items.json",
    )
    log(f"Dask scale: {count:,} items of `{SCALE_COMMAND}`, {SCALE_WORKERS} workers")
    bare: list[float] = []
    walls: list[float] = []
    recorded: list[int] = []
    started = time.perf_counter()
    try:
        _scale_rounds(ctx, folder, count, bare, walls, recorded)
    except Exception as error:
        section.notes.append(f"Dask scale stopped: {type(error).__name__}: {error}")
    minutes = (time.perf_counter() - started) / 60.0
    section.rows = scale_rows(bare, walls, recorded, count)
    section.notes.append(
        f"Dask scale: a LocalCluster of {SCALE_WORKERS} worker processes x 1 thread on "
        f"127.0.0.1; each round runs a bare client.map of {count:,} items of "
        f"`{SCALE_COMMAND}` (a subprocess.run of sh -c per item, all submitted at once; "
        f"the client already connected), then `mapwise run --executor dask` with "
        f"max_parallel {SCALE_WORKERS} (a fresh process: start-up in its time); "
        f"the figure took {minutes:.1f} min"
    )
    return section


def _scale_rounds(
    ctx: Context,
    folder: Path,
    count: int,
    bare: list[float],
    walls: list[float],
    recorded: list[int],
) -> None:
    """A small untimed warm-up of each, then ``ctx.runs`` rounds of both."""
    from distributed import Client

    cluster = _cluster(SCALE_WORKERS, 1)
    try:
        address = str(cluster.scheduler_address)
        with Client(address, set_as_default=False) as client:  # type: ignore[no-untyped-call]
            bare_map(client, 100)
            for round_no in range(1, ctx.runs + 1):
                bare.append(bare_map(client, count))
                wall, done = scale_mapwise(folder, address, count)
                walls.append(wall)
                recorded.append(done)
                log(
                    f"  round {round_no}: bare client.map {count / bare[-1]:.0f}/s, "
                    f"mapwise {count / wall:.0f}/s"
                )
    finally:
        with contextlib.suppress(Exception):
            cluster.close()


def scale_rows(bare: list[float], walls: list[float], recorded: list[int], count: int) -> list[Row]:
    """Items per second of both, the check of mapwise's runs, and their ratio."""
    where = f"{SCALE_WORKERS} Dask workers, {count:,} items of `{SCALE_COMMAND}`"
    plain = Row("B1", f"bare client.map, {where}", tuple(count / w for w in bare), "items/s")
    ours = Row(
        "B1", f"mapwise run --executor dask, {where}", tuple(count / w for w in walls), "items/s"
    )
    rows = [plain, ours]
    if recorded:
        fewest = (float(min(recorded)),)
        measure = "items recorded succeeded after each Dask scale run (fewest)"
        rows.append(Row("B1", measure, fewest, "count", at_least(count)))
    measure = f"mapwise / bare client.map on {SCALE_WORKERS} Dask workers"
    rows.append(paired_ratio_row("B1", measure, ours, plain, at_least(SCALE_TARGET)))
    return rows
