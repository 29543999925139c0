"""Terminal output: the live progress display, periodic progress lines, tables.

The engine knows no terminal; ``ProgressDisplay`` subscribes to its events. rich is
imported only for the live bar: plain lines need none of it, and its import is a tenth of
a short job's start-up.
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

from mapwise.cli.common import printable
from mapwise.domain.states import ItemStatus, Phase
from mapwise.engine.events import (
    Event,
    ItemFinished,
    ItemsFrozen,
    MapProgress,
    Notice,
    Output,
    PhaseStarted,
    StepFinished,
    Stopping,
)
from mapwise.reports import human_seconds

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

LINE_INTERVAL = 5.0


def progress_text(event: MapProgress) -> str:
    """``120/1000 done, 3 failed, 8 running, 41.2/s, ETA 21.4s``."""
    done = event.succeeded + event.dlq
    rate = event.done_this_run / event.elapsed if event.elapsed > 0 else 0.0
    remaining = event.total - done
    eta = remaining / rate if rate > 0 else None
    parts = [f"{done}/{event.total} done", f"{event.dlq} failed", f"{event.running} running"]
    if event.retrying:
        parts.append(f"{event.retrying} awaiting retry")
    parts += [f"{rate:.1f}/s", f"ETA {human_seconds(eta) if remaining else '0s'}"]
    return ", ".join(parts)


class ProgressDisplay:
    """Shows a job's progress: a live bar on a terminal, else a line every few seconds."""

    def __init__(
        self, stream: IO[str], *, live: bool, quiet: bool = False, output: IO[bytes] | None = None
    ) -> None:
        self.stream = stream
        self.console: Any = None  # a rich Console, made for the live bar only
        self.output = output
        self.live = live and not quiet
        self.quiet = quiet
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = 0.0

    def print(self, text: str) -> None:
        """Print a line, its control characters escaped (item data, stderr tails)."""
        text = printable(text)
        if self.console is not None:
            self.console.print(text, markup=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def __call__(self, event: Event) -> None:
        if isinstance(event, Output):
            # reduce's standard output is the job's result: shown even with --quiet
            self.close()
            self._write_output(event.data)
            return
        if self.quiet:
            return
        if isinstance(event, MapProgress):
            self._on_progress(event)
        elif isinstance(event, PhaseStarted):
            self._on_phase(event)
        elif isinstance(event, StepFinished):
            self._on_step(event)
        elif isinstance(event, ItemsFrozen):
            self.print(f"items: {event.total}")
        elif isinstance(event, ItemFinished) and event.status is ItemStatus.DLQ:
            self.print(f"item {event.item_id} failed (attempt {event.attempt_no}): {event.error}")
        elif isinstance(event, Stopping):
            self.print(
                f"{event.signal_name}: stopping; ending {event.running} running item(s) "
                "(press again to stop at once)"
            )
        elif isinstance(event, Notice):
            self.print(event.text)

    def _on_phase(self, event: PhaseStarted) -> None:
        self.close()
        if event.phase is Phase.MAP:
            if self.live:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                if self.console is None:
                    self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
                self._progress = Progress(
                    TextColumn("map"),
                    BarColumn(),
                    TextColumn("{task.fields[text]}"),
                    TimeElapsedColumn(),
                    console=self.console,
                    transient=False,
                )
                self._task = self._progress.add_task("map", total=event.steps, text="")
                self._progress.start()
        elif event.steps:
            self.print(f"{event.phase.value}: {event.steps} step(s)")

    def _on_step(self, event: StepFinished) -> None:
        record = event.record
        verdict = (
            "ok"
            if record.ok
            else f"FAILED ({record.error_kind.value if record.error_kind else ''})"
        )
        self.print(
            f"{event.phase.value} step {event.step_index + 1} {verdict} "
            f"in {human_seconds(record.duration)}: {record.label}"
        )
        if not record.ok and record.stderr_tail:
            for line in record.stderr_tail.splitlines()[-5:]:
                self.print(f"  | {line}")

    def _on_progress(self, event: MapProgress) -> None:
        if self._progress is not None and self._task is not None:
            done = event.succeeded + event.dlq
            self._progress.update(self._task, completed=done, text=progress_text(event))
            return
        now = time.monotonic()
        finished = event.succeeded + event.dlq >= event.total
        if now - self._last_line >= LINE_INTERVAL or finished:
            self._last_line = now
            self.print(f"map: {progress_text(event)}")

    def _write_output(self, data: bytes) -> None:
        """Reduce's output, as bytes where stdout has a buffer (text streams get it decoded)."""
        if self.output is not None:
            self.output.write(data)
            self.output.flush()
            return
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            sys.stdout.write(data.decode("utf-8", errors="replace"))
            sys.stdout.flush()

    def close(self) -> None:
        """Stop the live display (before printing a summary)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None
