"""Run one command as a real subprocess, safely.

Why this module exists: a step's command may start grandchildren, ignore SIGTERM, print
gigabytes, print nothing, hang, or not exist. Whatever it does, `run_command` returns a
`CommandResult` with a monotonic duration, leaves no member of the command's process group
alive, and never hangs on a pipe that an escaped (``setsid``) grandchild holds open.

How:

- the command leads its own session and process group (pgid == pid), stdin is /dev/null;
- one thread multiplexes stdout, stderr and (on Linux) a pidfd with ``poll``, so there
  is no thread per stream, no deadlock on big output, and the exit is seen at once;
- a command costs few system calls (plain pipes, one shared /dev/null, a ``poll`` object
  whose registrations make no system call): with short commands and a pool of threads
  sharing one interpreter lock, every system call is a chance to wait for that lock.
- a timeout or a cancel sends TERM to the group, then KILL after ``kill_grace`` seconds;
- the leader's exit is observed without reaping it (``waitid(WNOWAIT)``): while the zombie
  exists its pid, hence the pgid, cannot be reused, so the KILL that sweeps the rest of
  the group can never hit a stranger. Only then is the leader reaped.

Questions about processes that are not our children (/proc, liveness of a group, killing
one after a grace period) are answered by ``mapwise.executors.procgroups``.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mapwise.executors.logsink import LogSink
from mapwise.executors.procgroups import kill_process_group, process_group_alive, signal_group

__all__ = [
    "CommandResult",
    "CommandSpec",
    "kill_process_group",  # from procgroups, for callers that kill what they started
    "process_group_alive",
    "run_command",
]

_POLL_INTERVAL = 0.1  # how often cancel and the timeout are checked, at most
_IDLE_SLEEP = 0.02  # wait between exit checks when nothing is left to select on
_DRAIN_AFTER_EXIT = 1.0  # read pipes this long past the leader's exit, then give up
_READ_CHUNK = 64 * 1024
_TAIL_BYTES = 4096
_OUTPUT_HEAD = 64 * 1024  # keep_output: what an agent says first (its session) ...
_OUTPUT_TAIL = 4 * 1024 * 1024  # ... and last (its result object), whatever the middle
_TAIL_LINES = 20
_EXIT = "exit"  # poll tag of the pidfd
_POLL_DONE = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL
_HAVE_WAITID = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


@dataclass(frozen=True)
class CommandSpec:
    """What to run, where, with which environment and time limit."""

    argv: tuple[str, ...]  # e.g. ("/bin/sh", "-c", script) or ("claude", "-p", prompt)
    env: Mapping[str, str]  # the full environment
    cwd: Path
    timeout: float | None  # seconds; None = no limit
    capture_stdout: bool = False  # keep stdout (up to capture_limit bytes) for `capture:`
    # an agent step: keep the head and the tail of stdout (its session starts it, its
    # result ends it) and show each chunk to ``watch`` (Codex's thread id, as it comes)
    keep_output: bool = False
    watch: Callable[[bytes], None] | None = None


@dataclass(frozen=True)
class CommandResult:
    """How one command ended; every outcome carries a measured duration."""

    exit_code: int | None  # None when killed by a signal or not started
    signal: int | None  # the signal number that ended the process, if any
    timed_out: bool
    interrupted: bool  # ended because `cancel` was set
    spawn_error: str | None  # e.g. "No such file or directory: 'claude'"
    started_at: float  # time.time() at start (wall clock, for records)
    ended_at: float  # time.time() at end
    duration: float  # time.monotonic() difference: always set, for every outcome
    stdout: str | None  # captured stdout (utf-8, errors="replace") if capture_stdout
    stderr_tail: str  # last ~20 lines / 4 KiB of stderr, utf-8 with errors="replace"
    pid: int | None
    output: str | None = None  # keep_output: stdout's head and tail (all of a small one)

    @property
    def ok(self) -> bool:
        """True only for a clean exit 0 that was neither timed out nor interrupted."""
        return (
            self.exit_code == 0
            and not self.timed_out
            and not self.interrupted
            and self.spawn_error is None
        )


class _Tail:
    """The last bytes of a stream, bounded, so a chatty stderr costs constant memory."""

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self._limit = limit
        self._cut = False

    def add(self, data: bytes) -> None:
        self._buf += data[-self._limit :]
        excess = len(self._buf) - self._limit
        if excess > 0 or len(data) > self._limit:
            self._cut = True
        if excess > 0:
            del self._buf[:excess]

    @property
    def cut(self) -> bool:
        return self._cut

    def raw(self) -> bytes:
        return bytes(self._buf)

    def text(self, max_lines: int) -> str:
        """The last ``max_lines`` lines; a line cut by the byte bound is dropped if possible."""
        data = bytes(self._buf)
        if self._cut:
            newline = data.find(b"\n")
            if 0 <= newline < len(data) - 1:
                data = data[newline + 1 :]
        text = data.decode("utf-8", errors="replace").removesuffix("\n")
        return "\n".join(text.split("\n")[-max_lines:]) if text else ""


class _Capture:
    """The first ``limit`` bytes of stdout, for a step's ``capture:``."""

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self._limit = limit

    def add(self, data: bytes) -> None:
        room = self._limit - len(self._buf)
        if room > 0:
            self._buf += data[:room]

    def text(self) -> str:
        return self._buf.decode("utf-8", errors="replace")


class _Output:
    """The head and the tail of stdout, bounded: an agent's session and its result."""

    def __init__(self) -> None:
        self.head = _Capture(_OUTPUT_HEAD)
        self.tail = _Tail(_OUTPUT_TAIL)
        self.total = 0

    def add(self, data: bytes) -> None:
        self.head.add(data)
        self.tail.add(data)
        self.total += len(data)

    def text(self) -> str:
        tail = self.tail.raw()
        if self.total <= len(tail):
            return tail.decode("utf-8", errors="replace")
        head = self.head.text()
        return head + "\n" + tail.decode("utf-8", errors="replace")


def _describe_spawn_error(exc: BaseException) -> str:
    """A short message such as ``No such file or directory: 'claude'``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if exc.filename is None else f"{exc.strerror}: {exc.filename!r}"
    return f"{type(exc).__name__}: {exc}"


_devnull_fd: int | None = None


def _devnull() -> int:
    """One /dev/null descriptor for every command's stdin (close-on-exec in this process)."""
    global _devnull_fd
    if _devnull_fd is None:
        _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _devnull_fd


@dataclass(frozen=True)
class _Spawned:
    proc: subprocess.Popen[bytes]
    stdout: int  # read ends of the command's pipes, owned by the caller
    stderr: int


def _spawn(spec: CommandSpec) -> _Spawned:
    """Start the command as the leader of a new session and process group."""
    if not spec.argv:
        raise ValueError("empty command")
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        proc = subprocess.Popen(
            list(spec.argv),
            env=spec.env,
            cwd=spec.cwd,
            stdin=_devnull(),
            stdout=out_write,
            stderr=err_write,
            start_new_session=True,
        )
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    return _Spawned(proc, out_read, err_read)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd that becomes readable when ``pid`` exits, where the OS has them."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd: int = pidfd_open(pid)
    except OSError:
        return None
    return fd


class _Run:
    """One running command: its pipes, its limits, and what has been done to it so far."""

    def __init__(
        self, spawned: _Spawned, spec: CommandSpec, log: LogSink | None, limit: int
    ) -> None:
        self.proc = spawned.proc
        self.pgid = self.proc.pid  # start_new_session: the leader's pid is the group's id
        self.log = log
        self.capture = _Capture(limit) if spec.capture_stdout else None
        self.output = _Output() if spec.keep_output else None
        self.watch = spec.watch
        self.tail = _Tail(_TAIL_BYTES)
        self.owned = [spawned.stdout, spawned.stderr]  # closed by finish
        self.open: dict[int, str] = {spawned.stdout: "stdout", spawned.stderr: "stderr"}
        self.pidfd = _open_pidfd(self.proc.pid)
        if self.pidfd is not None:
            self.owned.append(self.pidfd)
            self.open[self.pidfd] = _EXIT
        self.poller = select.poll()
        for fd in self.open:
            self.poller.register(fd, select.POLLIN)
        self.exited_at: float | None = None  # monotonic time the leader's exit was seen
        self.term_sent_at: float | None = None
        self.kill_sent = False
        self.timed_out = False
        self.interrupted = False

    def wait(self, deadline: float | None, cancel: threading.Event | None, grace: float) -> None:
        """Pump output until the leader exited and the pipes closed (or the drain bound)."""
        while True:
            now = time.monotonic()
            if self.exited_at is None:
                if self._leader_exited():
                    self.exited_at = now
                    signal_group(self.pgid, signal.SIGKILL)  # nothing outlives its step
                else:
                    self._enforce_limits(now, deadline, cancel, grace)
            if self.exited_at is not None and (
                not self._pipes_open() or now - self.exited_at >= _DRAIN_AFTER_EXIT
            ):
                return
            self._pump()

    def finish(self) -> int:
        """Kill whatever is left of the group, reap the leader, close every fd.

        The KILL reaches every member before the leader is reaped (its zombie pins the
        pgid). Members that held the pipes have closed them by then; others may still be
        finishing their exit in the kernel, but can run no more code.
        """
        try:
            signal_group(self.pgid, signal.SIGKILL)
            return self.proc.wait()
        finally:
            for fd in self.owned:
                os.close(fd)

    def _leader_exited(self) -> bool:
        """Whether the leader exited, without reaping it (so its pgid stays ours)."""
        if not _HAVE_WAITID:
            return self.proc.poll() is not None
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.proc.pid, flags) is not None
        except ChildProcessError:  # reaped behind our back: it is gone either way
            return True

    def _enforce_limits(
        self, now: float, deadline: float | None, cancel: threading.Event | None, grace: float
    ) -> None:
        """TERM the group on cancel or timeout; KILL it once the grace period is over."""
        if self.term_sent_at is None:
            if cancel is not None and cancel.is_set():
                self.interrupted = True
            elif deadline is not None and now >= deadline:
                self.timed_out = True
            else:
                return
            self.term_sent_at = now
            signal_group(self.pgid, signal.SIGTERM)
        elif not self.kill_sent and now - self.term_sent_at >= grace:
            self.kill_sent = True
            signal_group(self.pgid, signal.SIGKILL)

    def _pipes_open(self) -> bool:
        return any(tag != _EXIT for tag in self.open.values())

    def _forget(self, fd: int) -> None:
        self.poller.unregister(fd)
        del self.open[fd]

    def _pump(self) -> None:
        """Read whatever is ready, waiting at most one poll interval."""
        if not self.open:
            time.sleep(_IDLE_SLEEP)
            return
        for fd, events in self.poller.poll(_POLL_INTERVAL * 1000):
            tag = self.open.get(fd)
            if tag is None or not events & _POLL_DONE:
                continue
            if tag == _EXIT:
                self._forget(fd)  # the exit is confirmed by waitid next turn
            else:
                self._read(fd, tag)

    def _read(self, fd: int, stream: str) -> None:
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._forget(fd)
            return
        if self.log is not None:
            self.log.write(stream, data)
        if stream == "stderr":
            self.tail.add(data)
        else:
            if self.capture is not None:
                self.capture.add(data)
            if self.output is not None:
                self.output.add(data)
            if self.watch is not None:
                self.watch(data)

    def result(self, returncode: int, started_at: float, t0: float) -> CommandResult:
        return CommandResult(
            exit_code=returncode if returncode >= 0 else None,
            signal=-returncode if returncode < 0 else None,
            timed_out=self.timed_out,
            interrupted=self.interrupted,
            spawn_error=None,
            started_at=started_at,
            ended_at=time.time(),
            duration=time.monotonic() - t0,
            stdout=self.capture.text() if self.capture is not None else None,
            stderr_tail=self.tail.text(_TAIL_LINES),
            pid=self.proc.pid,
            output=self.output.text() if self.output is not None else None,
        )


def _abandon(spawned: _Spawned) -> None:
    """Kill, reap and close a command that cannot be watched."""
    signal_group(spawned.proc.pid, signal.SIGKILL)
    spawned.proc.wait()
    os.close(spawned.stdout)
    os.close(spawned.stderr)


def _not_run(
    spec: CommandSpec, started_at: float, t0: float, *, error: str | None, interrupted: bool
) -> CommandResult:
    """The result of a command that never ran (spawn failure, or cancelled beforehand)."""
    return CommandResult(
        exit_code=None,
        signal=None,
        timed_out=False,
        interrupted=interrupted,
        spawn_error=error,
        started_at=started_at,
        ended_at=time.time(),
        duration=time.monotonic() - t0,
        stdout="" if spec.capture_stdout else None,
        stderr_tail="",
        pid=None,
    )


def run_command(
    spec: CommandSpec,
    *,
    log: LogSink | None,
    cancel: threading.Event | None = None,
    kill_grace: float = 5.0,
    capture_limit: int = 1 << 20,
    on_start: Callable[[int], None] | None = None,
) -> CommandResult:
    """Run ``spec`` to its end and describe how it ended; never raises for the command's sake.

    ``on_start(pid)`` is called right after spawning (the pid is also the pgid, to record
    for killing orphans after a crash). If it, or anything else here, raises, the group
    is killed and reaped before the exception propagates. A ``cancel`` already set means
    the command is not started (interrupted, pid None). The ``log`` is written, not closed.
    """
    started_at = time.time()
    t0 = time.monotonic()
    if cancel is not None and cancel.is_set():
        return _not_run(spec, started_at, t0, error=None, interrupted=True)
    try:
        spawned = _spawn(spec)
    except (OSError, ValueError, TypeError, subprocess.SubprocessError) as exc:
        return _not_run(spec, started_at, t0, error=_describe_spawn_error(exc), interrupted=False)
    try:
        run = _Run(spawned, spec, log, capture_limit)
    except BaseException:  # e.g. EMFILE for the pidfd: do not leave the command running
        _abandon(spawned)
        raise
    try:
        if on_start is not None:
            on_start(spawned.proc.pid)
        deadline = None if spec.timeout is None else t0 + spec.timeout
        run.wait(deadline, cancel, kill_grace)
    finally:
        returncode = run.finish()
    return run.result(returncode, started_at, t0)
