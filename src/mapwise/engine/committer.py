"""The map phase's writer thread: records results and claims the next items.

Committing (an fsync under ``synchronous=FULL``) overlaps with the commands of other
slots: while one batch is being made durable, results keep arriving, and the next
transaction takes all of them at once. A slot still gets new work only from the
transaction that recorded its last result, so a crash re-runs at most one item per slot.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mapwise.domain.records import Finished, Settled
from mapwise.store.batches import Batch
from mapwise.store.continuation import ClaimPlan
from mapwise.store.jobstore import JobStore
from mapwise.store.records import Claim
from mapwise.store.worktrees import Pool


@dataclass(frozen=True)
class Committed:
    """What one transaction did: results recorded, slots offered, items claimed."""

    finished: list[Finished]
    offered: list[int]
    claims: list[Claim]
    batches: int  # how many submitted batches this transaction merged
    settled: list[Settled] = field(default_factory=list)  # merge outcomes it recorded


class Committer:
    """Owns the store's connection while the map phase runs; one transaction at a time."""

    def __init__(
        self,
        store: JobStore,
        *,
        run_no: int,
        host: str,
        deliver: Callable[[Committed | BaseException], None],
        pool: Pool | None = None,
        plan: ClaimPlan | None = None,
    ) -> None:
        self._store = store
        self._pool = pool
        self._plan = plan
        self._run_no = run_no
        self._host = host
        self._deliver = deliver
        self._inbox: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="mapwise-commit", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        self._inbox.put(batch)

    def close(self) -> None:
        self._inbox.put(None)
        self._thread.join()

    def _take(self) -> tuple[list[Batch], bool]:
        """The next batch and every batch already waiting behind it; True when closing."""
        first = self._inbox.get()
        if first is None:
            return [], True
        batches = [first]
        while True:
            try:
                more = self._inbox.get_nowait()
            except queue.Empty:
                return batches, False
            if more is None:
                self._inbox.put(None)
                return batches, False
            batches.append(more)

    def _loop(self) -> None:
        while True:
            batches, closing = self._take()
            if closing:
                return
            claim = all(b.claim for b in batches if b.counted)
            merged = Batch(
                finished=[f for b in batches for f in b.finished],
                lost=[gone for b in batches for gone in b.lost],
                settled=[s for b in batches for s in b.settled],
                free_slots=[slot for b in batches for slot in b.free_slots] if claim else [],
                claim=claim,
                progress=[note for b in batches for note in b.progress],
            )
            try:
                claims = self._store.commit_batch(
                    merged,
                    run_no=self._run_no,
                    host=self._host,
                    now=time.time(),
                    pool=self._pool,
                    plan=self._plan,
                )
            except BaseException as error:
                self._deliver(error)
                return
            counted = sum(1 for b in batches if b.counted)
            if not counted:  # progress only: the map state asked for nothing
                continue
            offered = [slot for b in batches for slot in b.free_slots]
            done = Committed(list(merged.finished), offered, claims, counted, list(merged.settled))
            self._deliver(done)
