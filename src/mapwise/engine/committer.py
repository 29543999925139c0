"""The map phase's transactions: record results and claim the next items.

The scheduler hands it each transaction that ``advance`` asks for while it works through
a batch of messages (``submit``), then commits them all as one (``flush``), in its own
thread. Commands of the other slots go on meanwhile, and results that arrive while a
transaction is made durable (an fsync under ``synchronous=FULL``) wait in the
scheduler's queue for the next one. A slot still gets new work only from the
transaction that recorded its last result, so a crash re-runs at most one item per slot.

Why not a writer thread: handing each transaction to another thread and its claims back
costs two hand-offs of the interpreter lock per transaction, more than the overlap they
buy; the map phase of 2,000 short commands ran about 5 % faster without them (issue 15,
docs/benchmarks.md).
"""

from __future__ import annotations

import time
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
    """Owns the store's connection while the map phase runs; one transaction per flush."""

    def __init__(
        self,
        store: JobStore,
        *,
        run_no: int,
        host: str,
        pool: Pool | None = None,
        plan: ClaimPlan | None = None,
    ) -> None:
        self._store = store
        self._pool = pool
        self._plan = plan
        self._run_no = run_no
        self._host = host
        self._waiting: list[Batch] = []

    def submit(self, batch: Batch) -> None:
        """Keep ``batch`` for the next ``flush``."""
        self._waiting.append(batch)

    @property
    def waiting(self) -> bool:
        return bool(self._waiting)

    def flush(self) -> Committed | None:
        """Commit every batch submitted since the last flush as one transaction.

        Returns what it did, or None when nothing waited or only progress did (which
        the map state never asked for). A failure of the store is raised.
        """
        batches, self._waiting = self._waiting, []
        if not batches:
            return None
        claim = all(b.claim for b in batches if b.counted)
        merged = Batch(
            finished=[f for b in batches for f in b.finished],
            lost=[gone for b in batches for gone in b.lost],
            settled=[s for b in batches for s in b.settled],
            free_slots=[slot for b in batches for slot in b.free_slots] if claim else [],
            claim=claim,
            progress=[note for b in batches for note in b.progress],
        )
        claims = self._store.commit_batch(
            merged,
            run_no=self._run_no,
            host=self._host,
            now=time.time(),
            pool=self._pool,
            plan=self._plan,
        )
        counted = sum(1 for b in batches if b.counted)
        if not counted:  # progress only: the map state asked for nothing
            return None
        offered = [slot for b in batches for slot in b.free_slots]
        return Committed(list(merged.finished), offered, claims, counted, list(merged.settled))
