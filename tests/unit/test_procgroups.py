"""The procfs reader and group killer, against real processes: what it calls alive, which
group a process is in, when it started, and that a stubborn group really dies.

Expectations come from the kernel's own answers (``os.getpgid``, ``os.getppid``,
``waitpid``), not from /proc parsed a second way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mapwise.executors import procgroups
from mapwise.executors.procgroups import (
    ancestors,
    boot_id,
    boot_tick,
    group_members,
    kill_process_group,
    live_members,
    pid_alive,
    process_group_alive,
    processes_with_env,
    read_stat,
    start_time,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]

Spawn = Callable[..., "subprocess.Popen[bytes]"]


def _wait_for(condition: Callable[[], bool], limit: float = 10.0) -> bool:
    """Poll ``condition()`` until true; a killed process may take a moment to exit."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _state(pid: int) -> str | None:
    stat = read_stat(pid)
    return None if stat is None else stat.state


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start commands in their own session; kill and reap whatever is left at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_read_stat_agrees_with_the_kernel_about_this_process() -> None:
    # When this process's stat is read
    stat = read_stat(os.getpid())

    # Then it names our parent and group, runs, and started after boot
    assert stat is not None
    assert (stat.pid, stat.ppid, stat.pgrp) == (os.getpid(), os.getppid(), os.getpgrp())
    assert stat.alive
    assert stat.start_time is not None and 0 < stat.start_time <= boot_tick()


def test_a_command_name_with_parentheses_and_spaces_does_not_shift_the_fields(spawn: Spawn) -> None:
    # Given a process whose name mimics the fields that follow it in /proc/<pid>/stat
    code = (
        "open('/proc/self/comm', 'w').write('x) Z 1 1 1');"
        "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"
    )
    proc = spawn([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"

    # When its stat is read
    stat = read_stat(proc.pid)

    # Then the real fields are found after the name
    assert stat is not None
    assert (stat.state, stat.ppid, stat.pgrp) != ("Z", 1, 1)
    assert stat.ppid == os.getpid() and stat.pgrp == proc.pid and stat.alive


def test_start_time_is_the_boot_clock_at_spawn(spawn: Spawn) -> None:
    # Given the boot clock read just before and after a spawn
    before = boot_tick()
    proc = spawn(SLEEPER)
    after = boot_tick()

    # Then the process's start time lies between them (a tick of rounding either way)
    started = start_time(proc.pid)
    assert started is not None and before - 1 <= started <= after + 1


def test_an_unreaped_zombie_is_dead_and_its_group_is_empty(spawn: Spawn) -> None:
    # Given a child killed but not yet reaped (its pid still exists, as a zombie)
    proc = spawn(SLEEPER)
    assert pid_alive(proc.pid) and process_group_alive(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    assert _wait_for(lambda: _state(proc.pid) == "Z")

    # Then it counts as dead, as does its group, though the kernel still knows the pid
    os.kill(proc.pid, 0)  # no ProcessLookupError: the zombie is there
    assert not pid_alive(proc.pid)
    assert not process_group_alive(proc.pid)
    assert group_members(proc.pid) == []

    # And once reaped it is gone altogether
    proc.wait()
    assert read_stat(proc.pid) is None and not pid_alive(proc.pid)


def test_group_members_include_a_grandchild_that_stays_in_the_group(spawn: Spawn) -> None:
    # Given a shell leading a group, with a background grandchild
    proc = spawn(["/bin/sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())

    # Then both are members of the group, and only of that group
    assert set(group_members(proc.pid)) == {proc.pid, grandchild}
    assert os.getpgid(grandchild) == proc.pid
    assert set(live_members({proc.pid, os.getpgrp()})) >= {proc.pid, grandchild, os.getpid()}


def test_kill_process_group_kills_a_group_that_ignores_term(spawn: Spawn) -> None:
    # Given a group whose leader ignores SIGTERM
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"
    )
    proc = spawn([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"

    # When it is killed with a short grace
    assert kill_process_group(proc.pid, grace=0.2) is True

    # Then SIGKILL ended it after the grace
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert kill_process_group(proc.pid, grace=0.2) is False


def test_group_killing_refuses_the_ids_killpg_reads_as_everyone() -> None:
    for pgid in (0, 1, -5):
        with pytest.raises(ValueError, match="refusing"):
            kill_process_group(pgid, grace=0.1)
    assert kill_process_group(os.getpgrp(), grace=0.1) is False  # our own group: never


def test_processes_with_env_finds_a_command_by_its_environment(spawn: Spawn) -> None:
    # Given a command that left its group, marked by a variable only it has
    marker = uuid.uuid4().hex
    proc = spawn(SLEEPER, env={**os.environ, "PROCGROUPS_TEST": marker})

    # Then the scan finds it, and nothing else, and not once it is dead
    assert _wait_for(lambda: processes_with_env("PROCGROUPS_TEST", marker) == [proc.pid])
    assert processes_with_env("PROCGROUPS_TEST", marker + "x") == []
    os.kill(proc.pid, signal.SIGKILL)
    assert _wait_for(lambda: processes_with_env("PROCGROUPS_TEST", marker) == [])


def test_processes_with_env_leaves_out_another_value_of_a_second_variable(spawn: Spawn) -> None:
    # Given three commands with the same marker: one of this folder, one of another
    # folder, one started before the folder variable existed
    marker = uuid.uuid4().hex
    env = {**os.environ, "PROCGROUPS_TEST": marker}
    ours = spawn(SLEEPER, env={**env, "PROCGROUPS_DIR": "/jobs/a"})
    theirs = spawn(SLEEPER, env={**env, "PROCGROUPS_DIR": "/jobs/b"})
    older = spawn(SLEEPER, env=env)

    # Then the scan for this folder finds this folder's and the older one, not theirs
    def found() -> list[int]:
        return processes_with_env(
            "PROCGROUPS_TEST", marker, unless_other=("PROCGROUPS_DIR", "/jobs/a")
        )

    assert _wait_for(lambda: sorted(found()) == sorted([ours.pid, older.pid]))
    assert theirs.pid in processes_with_env("PROCGROUPS_TEST", marker)  # without: all three


def test_ancestors_are_this_process_and_its_parents() -> None:
    # Given a child that asks about its own ancestors
    code = (
        "import json, os; from mapwise.executors.procgroups import ancestors;"
        "print(json.dumps(sorted(ancestors(os.getpid()))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    # Then the chain holds it, us, and our own ancestors
    chain = set(json.loads(out.stdout))
    assert os.getpid() in chain and ancestors(os.getpid()) <= chain
    assert len(chain) == len(ancestors(os.getpid())) + 1


def test_boot_id_is_this_boots() -> None:
    with open("/proc/sys/kernel/random/boot_id") as handle:
        assert boot_id() == handle.read().strip() != ""


def test_without_proc_liveness_falls_back_to_the_kernel(
    monkeypatch: pytest.MonkeyPatch, spawn: Spawn
) -> None:
    # Given a system where /proc cannot be read
    monkeypatch.setattr(procgroups, "_PROC", "/nonexistent-proc")
    monkeypatch.setattr(procgroups, "_have_proc", lambda: False)
    proc = spawn(SLEEPER)

    # Then a live process is alive by kill(pid, 0), and its group alive by killpg
    assert read_stat(proc.pid) is None
    assert pid_alive(proc.pid) and process_group_alive(proc.pid)
    proc.kill()
    proc.wait()
    assert not pid_alive(proc.pid)
