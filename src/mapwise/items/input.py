"""Reading ``map.input``: a file relative to the workflow, or else a shell command.

The text (a file's content or a command's stdout) may be one JSON document, JSON lines,
or plain lines (each non-blank line one string item); :func:`parse_input_text` decides
which, in that order. Reading (:func:`read_input_text`) and parsing (:func:`parse_input`)
are separate steps so that a large input can instead be parsed a piece at a time
(:mod:`mapwise.items.source`) by the same rules.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mapwise.errors import InputError

_FILE_LIKE: Final = re.compile(r"^\S+\.(json|jsonl|txt|csv)$", re.IGNORECASE)
_STDERR_LINES: Final = 20
_KILL_GRACE_SECONDS: Final = 2.0
_CANCEL_POLL_SECONDS: Final = 0.1  # how often a running input command checks for a stop

# json.loads's scanner: (value, index after it) for the JSON value at an index, or
# StopIteration if none starts there (an attribute JSONDecoder sets, not in the stubs)
scan_json: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def parse_input_text(text: str, *, source: str) -> list[Any] | Any:
    """Parse input text: a whole JSON document as-is, else JSON lines, else plain lines.

    A whole document is returned unchanged (json_path applies to it); JSON lines and
    plain lines give a list. Blank text gives ``[]``. ``source`` is for messages only.
    """
    del source  # every text parses one way or another; kept for symmetry with errors
    text = text.removeprefix("\ufeff")
    if not text.strip():
        return []
    with contextlib.suppress(ValueError):
        return json.loads(text)
    lines = list(nonblank_lines(text))
    with contextlib.suppress(ValueError):
        return [json_line(line) for line in lines]
    return lines


def nonblank_lines(text: str) -> Iterator[str]:
    """The lines of ``text`` split at ``\\n``, without trailing ``\\r``, blank ones left out."""
    start, end = 0, len(text)
    while start <= end:
        stop = text.find("\n", start)
        if stop < 0:
            stop = end
        line = text[start:stop].rstrip("\r")
        if line.strip():
            yield line
        start = stop + 1


def json_line(line: str) -> Any:
    """``json.loads(line)``, faster for the usual line (no surrounding whitespace)."""
    with contextlib.suppress(StopIteration, ValueError):
        value, end = scan_json(line, 0)
        if end == len(line):
            return value
    return json.loads(line)


@dataclass(frozen=True)
class InputText:
    """The map input as read, before parsing: a file's content or a command's output."""

    text: str
    origin: str  # the file's path or the command, for messages
    json_file: bool  # a ``.json`` file, which must hold one JSON document


def read_input(
    source: str,
    *,
    base_dir: Path,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float | None = None,
) -> list[Any] | Any:
    """Read ``source`` as a file under ``base_dir`` if one exists, else run it as a command.

    Raises InputError for a missing file that looks like a file name, invalid JSON in a
    ``.json`` file, a failing or timed-out command, or a command with empty output.
    """
    raw = read_input_text(source, base_dir=base_dir, env=env, cwd=cwd, timeout=timeout)
    return parse_input(raw)


def read_input_text(
    source: str,
    *,
    base_dir: Path,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
) -> InputText:
    """:func:`read_input` without the parsing: every error but invalid JSON.

    A command input is stopped (its process group TERMed, then KILLed) as soon as
    ``cancel`` is set, with an :class:`InputStopped`; ``on_start(pgid)`` is called once it
    runs, to note its group for a second Ctrl-C.
    """
    path = base_dir / source
    if _is_file(path):
        return InputText(_read_file(path), str(path), path.suffix.lower() == ".json")
    if _FILE_LIKE.match(source):
        raise InputError(f"input file not found: {path}")
    text = _run_command(source, env=env, cwd=cwd, timeout=timeout, cancel=cancel, on_start=on_start)
    return InputText(text, source, False)


def looks_like_file(source: str, base_dir: Path) -> bool:
    """Whether ``map.input`` names a file (one exists, or it is named like one: ``x.json``)
    rather than a command: the same choice :func:`read_input_text` makes."""
    return _is_file(base_dir / source) or _FILE_LIKE.match(source) is not None


def parse_input(raw: InputText) -> list[Any] | Any:
    """Parse what :func:`read_input_text` read; InputError for a ``.json`` file's bad JSON."""
    if not raw.json_file:
        return parse_input_text(raw.text, source=raw.origin)
    try:
        return json.loads(raw.text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise InputError(
            f"input file {raw.origin} is not valid JSON: {exc.msg} "
            f"at line {exc.lineno}, column {exc.colno}"
        ) from exc


def _is_file(path: Path) -> bool:
    """``path.is_file()``, but false (not an error) for names no file can have."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_file(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"input file {path} is not UTF-8 (byte {exc.start})") from exc


class InputStopped(InputError):
    """The input command was stopped because the run was asked to stop (Ctrl-C)."""


def _run_command(
    command: str,
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float | None,
    cancel: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
) -> str:
    """Run ``command`` with ``/bin/sh -c`` in its own process group; return its stdout."""
    try:
        process = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise InputError(f"cannot run input command {command!r}: {exc}") from exc
    try:
        if on_start is not None:
            on_start(process.pid)
        stdout, stderr, timed_out = _communicate(process, timeout, cancel)
    except _Cancelled:
        raise InputStopped(f"input command stopped: {command}") from None
    tail = _tail(stderr)
    if timed_out:
        raise InputError(f"input command timed out after {timeout:g}s: {command}{tail}")
    if process.returncode != 0:
        raise InputError(
            f"input command failed ({_describe_exit(process.returncode)}): {command}{tail}"
        )
    try:
        text = stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"input command output is not UTF-8 (byte {exc.start}): {command}"
        ) from exc
    if not text.strip():
        raise InputError(f"input command produced no items (its output is empty): {command}{tail}")
    return text


class _Cancelled(Exception):
    """``cancel`` was set while the command ran; its group is killed by then."""


def _communicate(
    process: subprocess.Popen[bytes], timeout: float | None, cancel: threading.Event | None = None
) -> tuple[bytes, bytes, bool]:
    """Wait for the command; on timeout, cancel or interrupt kill its whole process group.

    With ``cancel``, the wait is cut into short ones (``communicate`` may be called again
    after a timeout, keeping what was read) so that a stop is seen while the command runs.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            if cancel is not None:
                wait = _CANCEL_POLL_SECONDS if wait is None else min(wait, _CANCEL_POLL_SECONDS)
            try:
                stdout, stderr = process.communicate(timeout=wait)
                return stdout, stderr, False
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                if cancel is not None and cancel.is_set():
                    raise _Cancelled from None
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return *_drain(process), True
    except BaseException:
        _kill_group(process)
        process.wait()
        raise


def _drain(process: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Collect what a killed command wrote; give up if an escaped process holds the pipes."""
    try:
        return process.communicate(timeout=_KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        process.wait()
        return b"", b""


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """TERM the command's process group, then KILL it after a short grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        if sig == signal.SIGTERM:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=_KILL_GRACE_SECONDS)


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _tail(stderr: bytes) -> str:
    """The last lines of stderr, indented under the message, or nothing."""
    lines = stderr.decode("utf-8", errors="replace").rstrip().splitlines()[-_STDERR_LINES:]
    if not lines:
        return ""
    return "\nstderr (last lines):\n" + "\n".join(f"  {line}" for line in lines)
