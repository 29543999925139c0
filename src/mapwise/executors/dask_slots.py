"""The Dask executor's slots and runs: what it keeps of them, and where a new slot goes.

Pure: no Dask in here, so the rules are tested without a cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Execution:
    """One run of an attempt on a slot, on record at the coordinator before it is sent."""

    execution_id: str  # MAPWISE_EXECUTION_ID of the run's commands
    worker: str  # the address of the slot's worker
    where: str  # the attempt's host as recorded and shown: ``hostname (worker address)``
    started_at: float


@dataclasses.dataclass(frozen=True, eq=False)
class Slot:
    """A slot on a worker: a ``SlotRunner`` actor, and the Dask future that keeps it."""

    actor: Any  # distributed.Actor
    future: Any  # distributed.Future of the actor; released when the slot is dropped
    worker: str
    where: str


def choose_worker(
    threads: Mapping[str, int], slots: Mapping[str, int], avoid: frozenset[str]
) -> str | None:
    """The worker a new slot goes to: the one with the fewest slots per thread once it
    holds the new one too.

    ``threads`` is each worker's thread count as the scheduler has it, ``slots`` how many
    of the job's slots each already holds, ``avoid`` workers just lost (the scheduler may
    not know yet). Ties go to the first address in order, so placement is repeatable.
    ``None`` when no worker is known: the scheduler then places the slot on the first
    worker that joins.
    """
    usable = {w: n for w, n in threads.items() if w not in avoid and n > 0}
    if not usable:
        return None
    return min(sorted(usable), key=lambda w: (slots.get(w, 0) + 1) / usable[w])


def is_transport_loss(error: BaseException) -> bool:
    """Whether a slot call's exception means the slot's worker (or the way to it) is gone.

    The worker's side never raises (``dask_worker.run_on_worker`` turns every error into
    a result), so a connection error is the only way a call fails there: the actor's
    ``OSError('Unable to contact Actor's worker')`` and Dask's ``CommClosedError`` are
    both ``OSError``s.
    """
    return isinstance(error, OSError)


def is_actor_lost(error: BaseException) -> bool:
    """Whether Dask refused a call because the actor's worker is known lost (``Actor``
    raises a bare ``RuntimeError`` for it, before anything is sent)."""
    return isinstance(error, RuntimeError) and "Worker holding Actor was lost" in str(error)
