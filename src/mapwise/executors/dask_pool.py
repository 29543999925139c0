"""The Dask executor's slots on the cluster: made when first needed, kept, dropped with
their worker. Used only in the Dask client's event loop, so nothing here takes a lock.

A slot is a ``SlotRunner`` actor. Calls to it go straight from this process to its
worker when this machine can reach the workers (the scheduler then is not on an
attempt's way at all), else through the scheduler, which forwards them: the first call to
each new slot (``where``) finds out, before any attempt runs there. A Dask configuration
that sets ``distributed.client.direct-to-workers`` decides instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import uuid
from typing import Any

from mapwise.executors.dask_slots import Slot, choose_worker, is_actor_lost, is_transport_loss
from mapwise.executors.dask_worker import SlotRunner

DIRECT_PROBE_SECONDS = 5.0  # a worker that does not answer a direct call by then is unreachable


class SlotLost(Exception):
    """The slot's worker was lost before the run was sent: the run started nothing."""


class SlotFailed(Exception):
    """A new slot could not be made (its actor failed to start on the worker)."""

    def __init__(self, error: BaseException) -> None:
        hint = " (is mapwise installed there?)" if isinstance(error, ImportError) else ""
        name = type(error).__name__
        super().__init__(f"cannot start a slot on a Dask worker{hint}: {name}: {error}")


class SlotPool:
    """The job's slots: idle ones to reuse, and how many each worker holds."""

    def __init__(self, client: Any, job_id: str, *, direct: bool | None) -> None:
        self._client = client
        self._job_id = job_id
        self._idle: list[Slot] = []
        self._placed: collections.Counter[str] = collections.Counter()  # slots per worker
        self._keys = itertools.count()
        self._lost: set[str] = set()  # workers whose slots were lost, while still listed
        # ``direct``: the Dask configuration's choice; None tries direct calls first
        self._probing = direct is None
        if self._probing:
            client.direct_to_workers = True

    def put_back(self, slot: Slot) -> None:
        """A slot whose run ended: the next attempt takes it."""
        self._idle.append(slot)

    def take_idle(self) -> Slot | None:
        """An idle slot, if there is one: no waiting."""
        return self._idle.pop() if self._idle else None

    async def make(self, avoid: frozenset[str]) -> Slot:
        """A new slot, on the least busy worker not just lost (when none is idle).

        ``SlotLost`` when the new slot's worker died at once (make another),
        ``SlotFailed`` when its actor could not start there.
        """
        threads: dict[str, int] = await self._client.scheduler.ncores()
        # workers lost lately stay avoided until the scheduler drops them too
        self._lost &= set(threads)
        worker = choose_worker(threads, self._placed, avoid | self._lost)
        key = f"mapwise-slot-{self._job_id}-{next(self._keys)}-{uuid.uuid4().hex[:8]}"
        pending = worker or ""
        self._placed[pending] += 1  # so that slots made at once spread out
        try:
            # placed where asked if that worker still lives, else wherever the scheduler likes
            where_to = {} if worker is None else {"workers": [worker], "allow_other_workers": True}
            future = self._client.submit(SlotRunner, key=key, actor=True, **where_to)
            (actor,) = await self._client.gather([future], asynchronous=True)
        except asyncio.CancelledError:  # interrupted while it waited for a worker
            with contextlib.suppress(Exception):
                future.release()
            raise
        except Exception as error:
            if self._client.status != "running":
                raise
            if is_transport_loss(error) or is_actor_lost(error):  # its worker died: again
                raise SlotLost(str(error)) from error
            raise SlotFailed(error) from error
        finally:
            self._placed[pending] -= 1
        # the actor comes back bound to the default client, and this executor's is not one
        actor._client, actor._future = self._client, future
        slot = Slot(actor=actor, future=future, worker=str(actor._address), where="")
        self._placed[slot.worker] += 1
        try:
            where = await self._where(actor)
        except asyncio.CancelledError:  # interrupted: the slot is not kept
            self._forget(slot)
            raise
        except Exception as error:
            self.drop_worker(slot)
            if is_transport_loss(error) or is_actor_lost(error):  # its worker died: again
                raise SlotLost(str(error)) from error
            raise
        return Slot(actor=actor, future=future, worker=slot.worker, where=where)

    async def _where(self, actor: Any) -> str:
        """The new slot's first call; while probing, a worker this machine cannot reach
        directly sends every call through the scheduler from then on."""
        if not (self._probing and self._client.direct_to_workers):
            where: str = await actor.where()
            return where
        try:
            where = await asyncio.wait_for(actor.where(), DIRECT_PROBE_SECONDS)
        except OSError:  # TimeoutError is one too
            self._client.direct_to_workers = False
            where = await actor.where()
        return where

    def drop_worker(self, lost: Slot) -> None:
        """A slot's worker is lost: forget the slot and the worker's idle ones (the busy
        ones fail on their own), so that the scheduler does not make their actors again."""
        self._lost.add(lost.worker)
        gone = [lost, *(slot for slot in self._idle if slot.worker == lost.worker)]
        self._idle = [slot for slot in self._idle if slot.worker != lost.worker]
        for slot in gone:
            self._forget(slot)

    def _forget(self, slot: Slot) -> None:
        """A slot no longer kept: not counted on its worker, its actor released."""
        self._placed[slot.worker] -= 1
        # a closing client cannot release it: the scheduler forgets it with the client
        with contextlib.suppress(Exception):
            slot.future.release()
