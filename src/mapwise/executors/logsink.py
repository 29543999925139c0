"""An attempt's log file: capped in size, private, and only created when there is output.

Why a class and not a plain file: a step may print gigabytes, and the log must stop growing
at ``max_bytes`` while the command keeps running (its pipes are drained elsewhere, so the
child never blocks). A step that prints nothing must leave no file behind, so headers wait
in memory until real output arrives. Logs may hold secrets a command printed, hence mode
0600 in folders created 0700.

A full disk or an unwritable folder never breaks the work: the sink stops writing, counts
what it drops and remembers the error (``write_error``), which the step runner notes in
the step's and the attempt's records (``log not written: <error>``).

Output of both streams is written raw, in the order it was read (as a terminal would show
``2>&1``); ``stream`` is accepted for the record but does not tag the bytes.

Not thread-safe: one attempt writes to its own sink from one thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

_FILE_MODE = 0o600
_DIR_MODE = 0o700
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def make_private_dirs(folder: Path) -> None:
    """Create each missing folder of ``folder`` with mode 0700 (``mkdir -p`` would not)."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        path.mkdir(mode=_DIR_MODE, exist_ok=True)


class LogSink:
    """An attempt's log file, capped in size, created lazily (no file when nothing is written),
    mode 0600, parent folders 0700."""

    def __init__(self, path: str | Path, *, max_bytes: int = 10 * 1024 * 1024) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        # kept as given: most attempts print nothing, and a Path costs more than their log
        self._path = path
        self._max_bytes = max_bytes
        self._fd: int | None = None
        self._created = False
        self._size = 0
        self._pending: list[bytes] = []
        self._at_line_start = True
        self._truncated = False
        self._dropped = 0
        self._error: str | None = None
        self._closed = False

    def header(self, text: str) -> None:
        """Queue a header line (e.g. ``=== step 1: shell: echo hi``).

        It reaches the file with the next output, or at ``close`` if the file exists by then;
        a header alone never creates the file.
        """
        line = text.rstrip("\n").encode("utf-8", errors="replace") + b"\n"
        self._pending.append(line)
        if self._fd is not None:
            self._flush_pending()

    def write(self, stream: str, data: bytes) -> None:
        """Append output of ``stream`` ("stdout"/"stderr"); past ``max_bytes`` it is dropped."""
        del stream  # both streams share one file, in arrival order
        if not data:
            return
        if self._closed or self._truncated or not self._ensure_open():
            self._dropped += len(data)
            return
        self._flush_pending()
        self._append(data, is_output=True)

    def close(self) -> None:
        """Write headers still waiting (only if the file exists) and close; safe to repeat."""
        if self._closed:
            return
        if self._fd is not None:
            self._flush_pending()
            self._close_fd()
        self._pending.clear()
        self._closed = True

    def __enter__(self) -> LogSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        """Where the log goes (whether or not anything was written yet)."""
        return Path(self._path)

    @property
    def path_if_written(self) -> Path | None:
        """The log's path if this sink created or appended to it, else None."""
        return self.path if self._created else None

    @property
    def bytes_dropped(self) -> int:
        """Output bytes that did not reach the file (cap reached, or a write error)."""
        return self._dropped

    @property
    def truncated(self) -> bool:
        """True once the cap was reached and the truncation marker written."""
        return self._truncated

    @property
    def write_error(self) -> str | None:
        """The first error that stopped the log (e.g. a full disk), if any."""
        return self._error

    def _ensure_open(self) -> bool:
        """Open (creating if needed) the file on first use; False once writing has failed."""
        if self._fd is not None:
            return True
        if self._error is not None:
            return False
        try:
            make_private_dirs(self.path.parent)
            fd = os.open(self._path, _OPEN_FLAGS, _FILE_MODE)
            os.fchmod(fd, _FILE_MODE)
            self._size = os.fstat(fd).st_size
        except OSError as exc:
            self._error = str(exc)
            return False
        self._fd = fd
        self._created = True
        return True

    def _flush_pending(self) -> None:
        """Write queued headers, each starting on a line of its own."""
        pending, self._pending = self._pending, []
        for line in pending:
            if self._truncated:
                return
            if not self._at_line_start:
                self._append(b"\n", is_output=False)
            self._append(line, is_output=False)

    def _append(self, data: bytes, *, is_output: bool) -> None:
        """Write what fits under the cap; on overflow drop the rest and write the marker once."""
        room = self._max_bytes - self._size
        kept = data if len(data) <= room else data[: max(room, 0)]
        self._emit(kept)
        lost = len(data) - len(kept)
        if lost and is_output:
            self._dropped += lost
        if lost:
            self._write_marker()

    def _write_marker(self) -> None:
        self._truncated = True
        prefix = b"" if self._at_line_start else b"\n"
        marker = f"[log truncated at {self._max_bytes} bytes; further output dropped]\n"
        self._emit(prefix + marker.encode())

    def _emit(self, data: bytes) -> None:
        """Write all of ``data``, handling short writes; an OSError stops the log for good."""
        view = memoryview(data)
        while view and self._fd is not None:
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                self._fail(exc, len(view))
                return
            self._size += written
            view = view[written:]
        if data and self._fd is not None:
            self._at_line_start = data.endswith(b"\n")

    def _fail(self, exc: OSError, unwritten: int) -> None:
        self._error = str(exc)
        self._dropped += unwritten
        self._truncated = True
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is None:
            return
        try:
            os.close(self._fd)
        except OSError as exc:
            self._error = self._error or str(exc)
        self._fd = None
