"""B1 on a Dask cluster (issue 5): the same items through ``--executor dask``, beside the pool.

One two-worker ``LocalCluster`` (2 worker processes of 2 threads: 4 items at once, as
many as ``max_parallel``) is started once for the B1 section, on 127.0.0.1, and closed at
its end whatever happens. Each round runs ``mapwise run ... --executor dask`` right after
the local run, over the same items in a fresh state directory, and checks the job's
database the same way. Both run on one machine, so the ratio local pool / Dask is what
the Dask executor costs per item (a scheduler round trip, pickling, the worker's thread
and the result's way back), not what a real cluster gains by having more machines.

The Dask rows have no target, and a Dask run that breaks is a note: it never takes the
B1 and B2 figures down with it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from results import Row, Section, at_least, ratio_row

WORKERS = 2
THREADS_PER_WORKER = 2
START_TIMEOUT = 120.0  # seconds for the cluster's workers to come up on a busy machine

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
    from distributed import LocalCluster

    cluster = None
    try:
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=WORKERS,
            threads_per_worker=THREADS_PER_WORKER,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
            timeout=START_TIMEOUT,
        )
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
    ratio = ratio_row("B1", "mapwise local pool / Dask (same machine)", local, dask, None)
    return [dask, checked, ratio, overhead_row(local, dask)]


def overhead_row(local: Row, dask: Row) -> Row:
    """The ratio in time: Dask's extra wall seconds per item, from the two medians.

    1/rate is the run's wall time per item, so the difference is what each item costs more
    on Dask with ``max_parallel`` in flight (a run's fixed cost, spread over its items, too).
    """
    samples: tuple[float, ...] = ()
    if local.median and dask.median:
        samples = ((1.0 / dask.median - 1.0 / local.median) * 1000.0,)
    note = "1/Dask - 1/local of the medians, max_parallel items in flight"
    return Row("B1", "extra wall time per item on Dask", samples, "ms", None, note)


def ratio_note(local: Row, dask: Row) -> str | None:
    """What the ratio means, in this run's numbers."""
    if not (local.median and dask.median):
        return None
    ratio = local.median / dask.median
    return (
        f"B1 local pool / Dask = {ratio:.2f}x (a Dask run took {ratio:.2f} times as long): "
        "both ran on this machine with 4 items in flight, so the ratio is Dask's per-item "
        "overhead (submit to the scheduler, pickle the attempt, announce its start, run it "
        "in a worker's thread, send the result back) against items that do nothing (`true`); "
        "it shrinks as items take longer, and says nothing of what more machines would add"
    )
