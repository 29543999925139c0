"""Writing checkpoints off the dispatch path: a thread with its own read connection.

The coordinator only tells it how many items finished, or asks for a checkpoint at a
phase boundary; the thread snapshots the database in one read transaction (WAL readers
never block the writer) and writes the file. Checkpoints are taken every
``MAPWISE_CHECKPOINT_SECONDS`` (60) or ``MAPWISE_CHECKPOINT_ITEMS`` (10,000) finished
items, whichever comes first, but never more often than ten times the last write took,
so a huge job does not spend its time snapshotting; the last ``MAPWISE_CHECKPOINT_KEEP``
(5) are kept. ``inf`` turns a knob off (never by time, never by count, keep all); a
value that is not a number, ``nan`` included, is ignored.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mapwise.store import db
from mapwise.store.checkpoint import (
    CheckpointCancelled,
    fold_wal,
    next_sequence,
    prune,
    write_checkpoint,
)
from mapwise.store.paths import JobPaths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointPolicy:
    """When to write checkpoints and how many to keep."""

    every_seconds: float = 60.0
    every_items: int = 10_000
    keep: int = 5
    backoff_factor: float = 10.0  # at least this many times the last write's duration apart

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CheckpointPolicy:
        """The knobs from ``environ``. A value that is not a number (``nan`` included) is
        ignored; ``inf`` (or a number too big for a float, ``1e400``) means never (seconds,
        items) or all of them (keep); one below the minimum is the minimum."""

        def number(name: str, default: float) -> float:
            try:
                value = float(environ[name]) if environ.get(name) else default
            except ValueError:
                return default
            return default if math.isnan(value) else value

        def whole(name: str, default: int) -> int:
            value = number(name, default)
            if math.isinf(value):
                return sys.maxsize if value > 0 else 1
            return max(int(value), 1)

        return cls(
            every_seconds=max(number("MAPWISE_CHECKPOINT_SECONDS", 60.0), 0.05),
            every_items=whole("MAPWISE_CHECKPOINT_ITEMS", 10_000),
            keep=whole("MAPWISE_CHECKPOINT_KEEP", 5),
        )


class Checkpointer:
    """Owns the checkpoint thread of one run."""

    def __init__(self, paths: JobPaths, policy: CheckpointPolicy) -> None:
        self.paths = paths
        self.policy = policy
        self._conn = db.connect(paths.database)
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._requested = 0  # boundary requests made
        self._written = 0  # boundary requests satisfied
        self._items = 0
        self._closing = False
        self._cancel = threading.Event()  # gives up a write under way (a bounded close)
        self._last_write = time.monotonic()
        self._last_cost = 0.0
        self._thread = threading.Thread(target=self._loop, name="mapwise-checkpoint", daemon=True)
        self._thread.start()

    def items_finished(self, count: int) -> None:
        """Called by the coordinator after a batch commit; cheap."""
        self._items += count
        if self._items >= self.policy.every_items:
            self._wake.set()

    def now(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Ask for a checkpoint at a phase boundary; wait until it is written (or for
        ``timeout`` seconds)."""
        with self._done:
            self._requested += 1
            target = self._requested
        self._wake.set()
        if wait:
            with self._done:
                self._done.wait_for(
                    lambda: self._written >= target or not self._thread.is_alive(), timeout
                )

    def close(self, *, within: float | None = None) -> None:
        """Write a final checkpoint and stop the thread.

        ``within`` bounds the wait (a stop by signal must exit at once): a write still
        under way after that many seconds is given up, its temporary file removed. The
        database stays the truth, so a stop without its final checkpoint loses nothing;
        a small job's checkpoint is written in time anyway.
        """
        self.now(timeout=within)
        self._cancel.set()
        self._closing = True
        self._wake.set()
        self._thread.join()
        self._conn.close()

    def _due(self) -> bool:
        with self._done:
            if self._requested > self._written:
                return True
        since = time.monotonic() - self._last_write
        if since < self._last_cost * self.policy.backoff_factor:
            return False
        return self._items >= self.policy.every_items or since >= self.policy.every_seconds

    def _loop(self) -> None:
        while not self._closing:
            self._wake.wait(timeout=min(self.policy.every_seconds, 1.0))
            self._wake.clear()
            if self._closing or not self._due():
                continue
            with self._done:
                target = self._requested
            self._write()
            with self._done:
                self._written = max(self._written, target)
                self._done.notify_all()

    def _write(self) -> None:
        started = time.monotonic()
        self._items = 0
        try:
            folder = self.paths.checkpoints
            sequence = next_sequence(folder)
            write_checkpoint(self._conn, folder, self.paths.job_id, sequence, cancel=self._cancel)
            prune(folder, self.policy.keep)
            fold_wal(self._conn)
        except CheckpointCancelled:
            log.info("checkpoint of job %s given up: the run is stopping", self.paths.job_id)
        except Exception as error:
            # a failed checkpoint never stops the work: the database stays the source of truth
            log.warning("writing a checkpoint of job %s failed: %s", self.paths.job_id, error)
        finally:
            self._last_write = time.monotonic()
            self._last_cost = self._last_write - started


def policy_from_environment() -> CheckpointPolicy:
    return CheckpointPolicy.from_env(os.environ)
