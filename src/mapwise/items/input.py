"""Reading ``map.input``: a file relative to the workflow, or else a shell command.

The text (a file's content or a command's stdout) may be one JSON document, JSON lines,
or plain lines (each non-blank line one string item); :func:`parse_input_text` decides
which, in that order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from mapwise.errors import InputError

_FILE_LIKE: Final = re.compile(r"^\S+\.(json|jsonl|txt|csv)$", re.IGNORECASE)
_STDERR_LINES: Final = 20
_KILL_GRACE_SECONDS: Final = 2.0


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
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    with contextlib.suppress(ValueError):
        return [json.loads(line) for line in lines]
    return lines


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
    path = base_dir / source
    if _is_file(path):
        return _read_file(path)
    if _FILE_LIKE.match(source):
        raise InputError(f"input file not found: {path}")
    return _run_command(source, env=env, cwd=cwd, timeout=timeout)


def _is_file(path: Path) -> bool:
    """``path.is_file()``, but false (not an error) for names no file can have."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _read_file(path: Path) -> list[Any] | Any:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"cannot read input file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"input file {path} is not UTF-8 (byte {exc.start})") from exc
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text.removeprefix("\ufeff"))
        except json.JSONDecodeError as exc:
            raise InputError(
                f"input file {path} is not valid JSON: {exc.msg} "
                f"at line {exc.lineno}, column {exc.colno}"
            ) from exc
    return parse_input_text(text, source=str(path))


def _run_command(
    command: str, *, env: Mapping[str, str], cwd: Path, timeout: float | None
) -> list[Any] | Any:
    """Run ``command`` with ``/bin/sh -c`` in its own process group and parse its stdout."""
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
    stdout, stderr, timed_out = _communicate(process, timeout)
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
    return parse_input_text(text, source=command)


def _communicate(
    process: subprocess.Popen[bytes], timeout: float | None
) -> tuple[bytes, bytes, bool]:
    """Wait for the command; on timeout or interrupt kill its whole process group."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        return stdout, stderr, False
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
