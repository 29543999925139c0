"""Stopping well: the first SIGINT/SIGTERM asks for a clean stop, the second stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


class StopController:
    """Turns signals into a stop request the coordinator checks between batches."""

    def __init__(self, on_second: Callable[[int], None] | None = None) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self._on_second = on_second
        self._previous: dict[int, object] = {}

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else "stop"

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            if self._on_second is not None:
                self._on_second(signum)
            return
        self.signum = signum
        self.requested.set()

    def install(self) -> None:
        """Take over SIGINT and SIGTERM; only possible in the main thread."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
