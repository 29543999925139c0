"""The world a command starts in: what any change to how commands are spawned must keep.

A new session, exactly the environment given, SIGPIPE at its default (Python ignores it,
and an ignored signal survives exec), no descriptor of ours, the given working directory.
(``os.posix_spawn`` was tried for speed and dropped: CPython holds the interpreter lock
while the child starts, which stalled every other thread; docs/benchmarks.md.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from mapwise.executors.process import CommandSpec, run_command

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX process groups, /proc")


def _run(script: str, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    spec = CommandSpec(
        argv=("/bin/sh", "-c", script),
        env=env if env is not None else {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd=cwd or Path.cwd(),
        timeout=30,
        capture_stdout=True,
    )
    result = run_command(spec, log=None)
    assert result.spawn_error is None, result.spawn_error
    return result.stdout or ""


def test_the_child_leads_a_new_session_with_exactly_the_given_environment() -> None:
    out = _run(
        'echo "$$ $(ps -o sid= -p $$) $(ps -o pgid= -p $$)"; env | sort',
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ONLY_THIS": "x y"},
    )
    first, *env_lines = out.splitlines()
    pid, sid, pgid = (int(word) for word in first.split())
    assert pid == sid == pgid
    names = {line.split("=", 1)[0] for line in env_lines}
    assert "ONLY_THIS=x y" in env_lines
    assert names <= {"ONLY_THIS", "PATH", "PWD", "SHLVL", "_", "OLDPWD"}


def test_sigpipe_is_back_at_its_default_in_the_child() -> None:
    # a shell cannot reset a signal ignored on entry: it would survive its own SIGPIPE
    spec = CommandSpec(
        argv=("/bin/sh", "-c", "kill -PIPE $$; echo survived"),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        cwd=Path.cwd(),
        timeout=30,
        capture_stdout=True,
    )
    result = run_command(spec, log=None)
    assert result.signal == 13 and "survived" not in (result.stdout or "")


def test_an_inheritable_descriptor_of_the_host_does_not_reach_the_child() -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        out = _run(f"[ -e /proc/self/fd/{write_end} ] && echo leaked || echo closed")
    finally:
        os.close(read_end)
        os.close(write_end)
    assert out.strip() == "closed"


def test_the_working_directory_is_the_one_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert _run("pwd -P", cwd=elsewhere).strip() == str(elsewhere.resolve())
    monkeypatch.chdir(tmp_path)
    assert _run("pwd -P", cwd=tmp_path).strip() == str(tmp_path.resolve())


def test_a_missing_program_is_a_spawn_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-program")
    spec = CommandSpec(argv=(missing,), env={}, cwd=Path.cwd(), timeout=30)
    result = run_command(spec, log=None)
    assert result.exit_code is None
    assert result.spawn_error == f"No such file or directory: {missing!r}"
