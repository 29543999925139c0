"""Real subprocesses through `run_command`: exits, signals, timeouts, groups, logs, output."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapwise.executors import procgroups
from mapwise.executors.logsink import LogSink
from mapwise.executors.process import (
    CommandResult,
    CommandSpec,
    kill_process_group,
    process_group_alive,
    run_command,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


def spec(
    script: str, cwd: Path, *, timeout: float | None = None, capture: bool = False
) -> CommandSpec:
    return CommandSpec(
        argv=("/bin/sh", "-c", script),
        env=dict(os.environ),
        cwd=cwd,
        timeout=timeout,
        capture_stdout=capture,
    )


def sh(
    script: str,
    cwd: Path,
    *,
    timeout: float | None = None,
    capture: bool = False,
    log: LogSink | None = None,
    cancel: threading.Event | None = None,
    capture_limit: int = 1 << 20,
    on_start: Callable[[int], None] | None = None,
) -> CommandResult:
    """Run a shell script with a short kill grace."""
    return run_command(
        spec(script, cwd, timeout=timeout, capture=capture),
        log=log,
        cancel=cancel,
        kill_grace=0.5,
        capture_limit=capture_limit,
        on_start=on_start,
    )


def pid_alive(pid: int) -> bool:
    """Alive unless gone or a zombie (a zombie runs nothing, whoever has to reap it)."""
    return procgroups.pid_alive(pid)


def dies(pid: int, limit: float = 10.0, *, alive: Callable[[int], bool] = pid_alive) -> bool:
    """True once ``pid`` is dead. SIGKILL is asynchronous: a killed process can run no more
    code, but the kernel may take a moment to finish its exit after the signal is sent, so
    this is a liveness check with a generous bound, not a speed assertion."""
    end = time.monotonic() + limit
    while alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def read_pid(path: Path) -> int:
    return int(path.read_text().strip())


def wait_for_file(path: Path, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not (path.exists() and path.read_text().strip()) and time.monotonic() < end:
        time.sleep(0.01)


# --- exit codes, signals, spawn errors -----------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_code_is_reported(tmp_path: Path, code: int) -> None:
    result = sh(f"exit {code}", tmp_path)

    assert result.exit_code == code
    assert result.signal is None
    assert result.ok is (code == 0)
    assert not result.timed_out and not result.interrupted and result.spawn_error is None
    assert result.pid is not None and result.started_at <= result.ended_at


def test_signal_death_reports_signal_and_no_exit_code(tmp_path: Path) -> None:
    result = sh("kill -9 $$", tmp_path)

    assert result.exit_code is None
    assert result.signal == signal.SIGKILL
    assert not result.ok and not result.timed_out


def test_missing_executable_is_a_spawn_error(tmp_path: Path) -> None:
    command = CommandSpec(("mapwise-no-such-cmd", "-p", "x"), dict(os.environ), tmp_path, None)

    result = run_command(command, log=None)

    assert result.spawn_error == "No such file or directory: 'mapwise-no-such-cmd'"
    assert result.exit_code is None and result.pid is None and not result.ok
    assert result.duration >= 0


def test_bad_cwd_and_permission_and_empty_argv_are_spawn_errors(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    env = dict(os.environ)
    cases = [
        CommandSpec(("/bin/true",), env, tmp_path / "missing", None),
        CommandSpec((str(script),), env, tmp_path, None),
        CommandSpec((), env, tmp_path, None),
    ]

    results = [run_command(case, log=None) for case in cases]

    assert results[0].spawn_error is not None and "missing" in results[0].spawn_error
    assert results[1].spawn_error is not None and "Permission denied" in results[1].spawn_error
    assert results[2].spawn_error == "ValueError: empty command"
    assert all(r.exit_code is None and not r.ok for r in results)


def test_on_start_gets_the_pid_which_leads_its_own_group(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []

    result = sh("exit 0", tmp_path, on_start=lambda pid: seen.append((pid, os.getpgid(pid))))

    assert seen == [(result.pid, result.pid)]
    assert result.pid != os.getpgrp()


def test_on_start_raising_kills_the_group_and_propagates(tmp_path: Path) -> None:
    started: list[int] = []

    def boom(pid: int) -> None:
        started.append(pid)
        raise RuntimeError("recorder failed")

    with pytest.raises(RuntimeError, match="recorder failed"):
        sh("sleep 30", tmp_path, on_start=boom)

    assert dies(started[0])


# --- timeouts, cancel, the process group --------------------------------------------------


def test_timeout_kills_grandchildren(tmp_path: Path) -> None:
    # Given a command that leaves a grandchild and then blocks
    pidfile = tmp_path / "pid"
    script = f"sleep 30 & echo $! > {pidfile}; sleep 30"

    # When it times out
    result = sh(script, tmp_path, timeout=0.5)

    # Then the whole group is gone, the grandchild included
    assert result.timed_out and not result.interrupted and not result.ok
    assert result.signal == signal.SIGTERM and result.exit_code is None
    assert dies(read_pid(pidfile))


def test_command_ignoring_term_is_killed_after_grace(tmp_path: Path) -> None:
    result = run_command(
        spec("trap '' TERM; sleep 30", tmp_path, timeout=0.2), log=None, kill_grace=0.3
    )

    assert result.timed_out
    assert result.signal == signal.SIGKILL
    assert result.duration >= 0.5


def test_leftover_background_child_of_a_successful_step_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    result = sh(f"sleep 30 & echo $! > {pidfile}; exit 0", tmp_path)

    assert result.ok
    assert dies(read_pid(pidfile))


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs setsid(1)")
def test_escaped_grandchild_holding_the_pipes_does_not_hang_the_step(tmp_path: Path) -> None:
    # Given a grandchild that leaves the group with setsid and keeps stdout/stderr open
    pidfile = tmp_path / "pid"
    escape = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 30' &"
    wait = f"while [ ! -s {pidfile} ]; do sleep 0.01; done"
    result = sh(f"{escape} {wait}; echo done", tmp_path, capture=True)
    escaped = read_pid(pidfile)
    try:
        # Then the step still returns, with the output printed before the exit
        assert result.ok
        assert result.stdout == "done\n"
        assert pid_alive(escaped)  # only setsid can outlive its step: it left the group
    finally:
        os.kill(escaped, signal.SIGKILL)


def test_cancel_sets_interrupted_and_kills_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    cancel = threading.Event()

    def cancel_once_started() -> None:
        wait_for_file(pidfile)
        cancel.set()

    setter = threading.Thread(target=cancel_once_started)
    setter.start()
    result = sh(f"sleep 30 & echo $! > {pidfile}; sleep 30", tmp_path, cancel=cancel)
    setter.join()

    assert result.interrupted and not result.timed_out and not result.ok
    assert result.signal == signal.SIGTERM
    assert dies(read_pid(pidfile))


def test_cancel_set_beforehand_does_not_start_the_command(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    marker = tmp_path / "ran"

    result = sh(f"touch {marker}", tmp_path, cancel=cancel)

    assert result.interrupted and result.pid is None and result.exit_code is None
    assert not marker.exists()


@pytest.mark.parametrize(
    ("script", "timeout"),
    [("sleep 0.3", None), ("sleep 0.3; exit 3", None), ("sleep 5", 0.3)],
    ids=["success", "failure", "timeout"],
)
def test_duration_is_never_less_than_the_real_time(
    tmp_path: Path, script: str, timeout: float | None
) -> None:
    result = sh(script, tmp_path, timeout=timeout)

    assert result.duration >= 0.3
    assert result.ended_at >= result.started_at


def test_group_helpers_on_a_real_group() -> None:
    # Given a process leading its own group, which ignores TERM (it says so once the trap
    # is set: a TERM before that would kill it, and the test would see no KILL)
    proc = subprocess.Popen(
        ["/bin/sh", "-c", "trap '' TERM; echo ready; sleep 30"],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert process_group_alive(proc.pid)

        # When the group is killed with a short grace
        assert kill_process_group(proc.pid, grace=0.2) is True
        proc.wait()

        # Then it is gone, and killing it again finds nothing
        assert dies(proc.pid, alive=process_group_alive)
        assert kill_process_group(proc.pid, grace=0.2) is False
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_group_helpers_refuse_own_group_and_reserved_ids() -> None:
    assert kill_process_group(os.getpgrp(), grace=0.1) is False
    with pytest.raises(ValueError):
        kill_process_group(0, grace=0.1)
    with pytest.raises(ValueError):
        process_group_alive(-1)


# --- output: capture, stderr tail, odd streams --------------------------------------------


def test_capture_stdout_keeps_output_and_respects_limit(tmp_path: Path) -> None:
    full = sh("echo hello; echo world", tmp_path, capture=True)
    limited = sh("printf 'abcdefghijklmnop'", tmp_path, capture=True, capture_limit=5)
    uncaptured = sh("echo hello", tmp_path)

    assert full.stdout == "hello\nworld\n"
    assert limited.stdout == "abcde"
    assert uncaptured.stdout is None


def test_stderr_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    result = sh("i=1; while [ $i -le 100 ]; do echo line $i >&2; i=$((i+1)); done", tmp_path)

    lines = result.stderr_tail.split("\n")
    assert lines == [f"line {i}" for i in range(81, 101)]


def test_stderr_tail_is_bounded_in_bytes(tmp_path: Path) -> None:
    result = sh("head -c 100000 /dev/zero | tr '\\0' x >&2; echo; echo last >&2", tmp_path)

    assert len(result.stderr_tail.encode()) <= 4096
    assert result.stderr_tail.endswith("last")


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    log = LogSink(tmp_path / "logs" / "a.log")

    result = sh(
        "printf 'ok\\377\\376\\n'; printf 'bad\\377\\n' >&2", tmp_path, capture=True, log=log
    )
    log.close()

    assert result.ok
    assert result.stdout == "ok\ufffd\ufffd\n"
    assert result.stderr_tail == "bad\ufffd"
    assert b"ok\xff\xfe\n" in (tmp_path / "logs" / "a.log").read_bytes()


def test_stdin_is_dev_null(tmp_path: Path) -> None:
    result = sh("cat; echo read-done", tmp_path, capture=True)

    assert result.ok and result.stdout == "read-done\n"


def test_command_that_closes_its_output_early(tmp_path: Path) -> None:
    result = sh("echo before; exec >&- 2>&-; sleep 0.2; exit 4", tmp_path, capture=True)

    assert result.exit_code == 4
    assert result.stdout == "before\n"


def test_big_output_returns_with_capped_log_and_capture(tmp_path: Path) -> None:
    # Given a 10 MB stdout, a 64 KiB log cap and a 1 KiB capture limit
    size = 10_000_000
    log = LogSink(tmp_path / "big.log", max_bytes=65536)

    # When it runs
    result = sh(f"head -c {size} /dev/zero", tmp_path, capture=True, capture_limit=1024, log=log)
    log.close()

    # Then the call returns, everything was drained, and nothing grew past its bound
    assert result.ok
    assert result.stdout is not None and len(result.stdout) == 1024
    assert log.bytes_dropped == size - 65536
    assert (tmp_path / "big.log").stat().st_size < 65536 + 100


# --- the log sink ---------------------------------------------------------------------------


def test_log_is_capped_with_one_marker(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = LogSink(path, max_bytes=100)

    result = sh("head -c 1000 /dev/zero | tr '\\0' a; echo; echo more >&2", tmp_path, log=log)
    log.close()

    content = path.read_bytes()
    assert result.ok
    assert content.startswith(b"a" * 100 + b"\n[log truncated")
    assert content.count(b"[log truncated") == 1
    assert log.bytes_dropped == 1000 - 100 + len(b"\nmore\n")


def test_log_file_is_private_and_created_only_with_output(tmp_path: Path) -> None:
    silent = LogSink(tmp_path / "s" / "silent.log")
    silent.header("=== step 1: shell: true")
    sh("true", tmp_path, log=silent)
    silent.close()

    loud = LogSink(tmp_path / "l1" / "l2" / "loud.log")
    loud.header("=== step 1: shell: echo hi")
    sh("echo hi", tmp_path, log=loud)
    loud.close()

    assert silent.path_if_written is None and not (tmp_path / "s").exists()
    path = tmp_path / "l1" / "l2" / "loud.log"
    assert loud.path_if_written == path
    assert path.read_text() == "=== step 1: shell: echo hi\nhi\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "l1").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "l1" / "l2").stat().st_mode) == 0o700


def test_log_headers_start_on_their_own_line(tmp_path: Path) -> None:
    log = LogSink(tmp_path / "a.log")
    log.header("=== step 1")
    log.write("stdout", b"no newline")
    log.header("=== step 2")
    log.header("=== step 3")
    log.close()

    assert (tmp_path / "a.log").read_text() == "=== step 1\nno newline\n=== step 2\n=== step 3\n"


def test_log_write_error_is_recorded_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = LogSink(blocker / "sub" / "a.log")

    log.write("stdout", b"hello")
    log.close()

    assert log.write_error is not None
    assert log.bytes_dropped == 5 and log.path_if_written is None


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=80), max_size=12),
    max_bytes=st.integers(min_value=0, max_value=300),
)
def test_log_keeps_a_prefix_and_accounts_for_every_byte(
    chunks: list[bytes], max_bytes: int
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.log"
        with LogSink(path, max_bytes=max_bytes) as log:
            for chunk in chunks:
                log.write("stdout", chunk)
        content = path.read_bytes() if path.exists() else b""

    total = b"".join(chunks)
    kept = content
    if log.truncated:
        # the marker follows the kept prefix, after a newline only if the prefix lacks one
        kept = total[:max_bytes]
        assert content.startswith(kept)
        rest = content[len(kept) :]
        assert rest.startswith((b"[log truncated", b"\n[log truncated"))
    assert total.startswith(kept)
    assert len(kept) == min(len(total), max_bytes)
    assert log.bytes_dropped == len(total) - len(kept)
    assert (log.path_if_written is None) == (not total)
