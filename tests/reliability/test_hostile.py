"""Hostile commands: each is handled, recorded with the right outcome, and leaves nothing.

A command that ignores SIGTERM, forks children (in the background, double-forked), prints
a gigabyte, prints invalid UTF-8, closes its output early, dies by a signal, or reads its
standard input. Each runs as a real job through the library (in this process); the test
checks the item's attempt and step records, that the job's commands are all gone (every
command notes its pid; ``/proc/*/environ`` is scanned for ``MAPWISE_JOB_ID``), and that
the inspection commands show the result without a traceback.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.processes import job_processes
from helpers.project import Project, mapreduce
from helpers.reliability import no_traceback
from mapwise.cli.exit_codes import exit_code_for
from mapwise.engine.runner import JobResult

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")

NOTE = 'echo $$ >> "$PIDS"'  # the step's shell, which leads the step's process group
SAFETY_TIMEOUT = 120  # an item timeout, so that a hang fails the test instead of stalling it
LOG_CAP = 10 * 1024 * 1024


def _run(project: Project, steps: list[Any], **map_options: Any) -> JobResult:
    """Run a one-item job of these agent steps to its end; its result."""
    pid_file = project.path("pids")
    options: dict[str, Any] = {
        "retry": {"max_attempts": 1},
        "timeout": SAFETY_TIMEOUT,
        "id": "${item}",
    }
    options.update(map_options)
    project.workflow(
        mapreduce(steps, env={"PIDS": str(pid_file)}, **options),
        items=["x"],
    )
    return project.run()


def _noted_pids(project: Project) -> list[int]:
    path = project.path("pids")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _assert_nothing_left(project: Project, job_id: str) -> None:
    """No process of the job lives: not the noted ones, not any with the job's id."""
    assert job_processes(job_id) == []
    ours = f"MAPWISE_JOB_ID={job_id}".encode()
    for pid in _noted_pids(project):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue  # gone
        assert ours not in environ, f"process {pid} of the job is alive"


def _attempt(project: Project, job_id: str) -> dict[str, Any]:
    [attempt] = project.db(job_id).attempts()
    return attempt


def _inspect_ok(project: Project, *args: str) -> str:
    done = project.inspect(*args)
    no_traceback(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_command_that_ignores_sigterm_is_killed_at_its_timeout(project: Project) -> None:
    # Given a step that ignores SIGTERM (so do its children) and loops, with a 1 s timeout
    body = f"trap '' TERM; {NOTE}; sleep 300 & echo $! >> \"$PIDS\"; while :; do sleep 0.1; done"
    result = _run(project, [{"shell": body, "timeout": 1}])

    # Then the item failed by timeout after at least 1 s, and the group was killed
    assert (result.dlq, exit_code_for(result.outcome)) == (1, 1)
    attempt = _attempt(project, result.job_id)
    assert (attempt["outcome"], attempt["error_kind"]) == ("failed", "timeout")
    assert attempt["duration"] >= 1.0
    [step] = project.db(result.job_id).steps()
    assert step["timed_out"] == 1
    assert step["error_kind"] == "timeout"
    assert len(_noted_pids(project)) == 2
    _assert_nothing_left(project, result.job_id)


def test_children_in_the_background_and_double_forked_are_killed_when_the_step_ends(
    project: Project,
) -> None:
    # Given a step that leaves a background child, a double-forked grandchild (its parent
    # exited: it is re-parented, still in the group) and a child of a child, then exits 0
    body = (
        f"{NOTE}; "
        'sleep 300 & echo $! >> "$PIDS"; '
        '( sleep 300 & echo $! >> "$PIDS" ) & '
        "sh -c 'sleep 300 & echo $! >> \"$PIDS\"'; "
        'while [ "$(wc -l < "$PIDS")" -lt 4 ]; do sleep 0.01; done; '
        "echo parent done"
    )
    result = _run(project, [{"shell": body, "capture": "said"}])

    # Then the item succeeded with the step's own output, and every child was killed
    assert (result.succeeded, exit_code_for(result.outcome)) == (1, 0), result
    attempt = _attempt(project, result.job_id)
    assert (attempt["outcome"], attempt["error_kind"]) == ("succeeded", None)
    [step] = project.db(result.job_id).steps()
    assert (step["exit_code"], step["signal"], step["timed_out"]) == (0, None, 0)
    item = project.db(result.job_id).item("x")
    assert json.loads(item["result"])["captures"]["said"] == "parent done"
    assert len(_noted_pids(project)) == 4
    _assert_nothing_left(project, result.job_id)


def test_a_gigabyte_of_output_finishes_with_a_capped_log(project: Project) -> None:
    # Given a step that prints 1 GiB
    result = _run(project, [f"{NOTE}; head -c 1G /dev/zero; echo tail-line >&2"])

    # Then the item succeeded, its log stopped at the cap, the tail of stderr is kept
    assert (result.succeeded, exit_code_for(result.outcome)) == (1, 0), result
    attempt = _attempt(project, result.job_id)
    assert attempt["outcome"] == "succeeded"
    log = Path(attempt["log_path"])
    assert LOG_CAP <= log.stat().st_size <= LOG_CAP + 64 * 1024
    [step] = project.db(result.job_id).steps()
    assert step["exit_code"] == 0
    assert "tail-line" in step["stderr_tail"]
    shown = _inspect_ok(project, "logs", result.job_id, "x")
    assert len(shown) <= LOG_CAP + 64 * 1024
    _assert_nothing_left(project, result.job_id)


def test_invalid_utf8_output_is_recorded_and_shown(project: Project) -> None:
    # Given a step capturing bytes that are not UTF-8, then a step failing with more on stderr
    steps = [
        {"shell": f"{NOTE}; printf 'ok \\377\\376 bad'", "capture": "raw"},
        f"{NOTE}; printf 'seen: %s\\n' \"${{raw}}\"; printf '\\303\\050 err \\377\\n' >&2; exit 3",
    ]
    result = _run(project, steps)

    # Then the failure is recorded (exit 3) with a readable stderr tail
    assert (result.dlq, exit_code_for(result.outcome)) == (1, 1)
    attempt = _attempt(project, result.job_id)
    assert (attempt["error_kind"], attempt["exit_code"], attempt["signal"]) == (
        "exit_code",
        3,
        None,
    )
    assert "err" in attempt["stderr_tail"]
    assert "\ufffd" in attempt["stderr_tail"]
    # And the log keeps the raw bytes; logs, dlq show and status show them without a traceback
    assert b"\303\050 err \377" in Path(attempt["log_path"]).read_bytes()
    assert "err" in _inspect_ok(project, "logs", result.job_id, "x")
    assert "exit" in _inspect_ok(project, "dlq", "show", result.job_id, "x")
    status = json.loads(_inspect_ok(project, "status", result.job_id, "--json", "--items"))
    assert status["dlq_count"] == 1
    _assert_nothing_left(project, result.job_id)


@pytest.mark.parametrize(
    ("body", "status", "error_kind"),
    [
        ("exec 1>&- 2>&-; sleep 0.2; exit 0", "succeeded", None),
        ("exec 1>&-; sleep 0.1; echo still here >&2; exit 0", "succeeded", None),
        ("exec 1>&-; echo into a closed stdout", "dlq", "exit_code"),
    ],
    ids=["closes-both", "closes-stdout", "writes-to-closed-stdout"],
)
def test_a_command_that_closes_its_output_early(
    project: Project, body: str, status: str, error_kind: str | None
) -> None:
    result = _run(project, [f"{NOTE}; {body}"])

    item = project.db(result.job_id).item("x")
    assert item["status"] == status
    assert _attempt(project, result.job_id)["error_kind"] == error_kind
    _assert_nothing_left(project, result.job_id)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGKILL, signal.SIGTERM])
def test_a_command_killed_by_a_signal_is_recorded_with_it(
    project: Project, sig: signal.Signals
) -> None:
    # Given a step that kills itself (no core file) after starting a child
    body = f'ulimit -c 0; {NOTE}; sleep 300 & echo $! >> "$PIDS"; kill -{sig.name[3:]} $$'
    result = _run(project, [body])

    # Then the attempt failed with error kind `signal`, the signal, and no exit code
    assert (result.dlq, exit_code_for(result.outcome)) == (1, 1)
    attempt = _attempt(project, result.job_id)
    recorded = (attempt["error_kind"], attempt["signal"], attempt["exit_code"])
    assert recorded == ("signal", int(sig), None)
    [step] = project.db(result.job_id).steps()
    assert (step["signal"], step["exit_code"], step["timed_out"]) == (int(sig), None, 0)
    assert _inspect_ok(project, "dlq", "list", result.job_id)
    _assert_nothing_left(project, result.job_id)


def test_a_command_reading_stdin_gets_end_of_file(project: Project) -> None:
    # Given a step that reads its standard input to the end, then a line
    body = f'{NOTE}; n=$(cat | wc -c); read line; echo "bytes=$n read=$?"'
    result = _run(project, [{"shell": body, "capture": "got"}])

    # Then it did not wait: stdin was empty and at its end
    assert (result.succeeded, exit_code_for(result.outcome)) == (1, 0), result
    item = project.db(result.job_id).item("x")
    assert json.loads(item["result"])["captures"]["got"] == "bytes=0 read=1"
    _assert_nothing_left(project, result.job_id)
