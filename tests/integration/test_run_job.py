"""Whole jobs run for real: durations, timeouts, retries, the DLQ, error policy, reduce,
state file permissions and job ids.

Each test writes a workflow into a temporary project, runs it through the library or the
real CLI, and asserts from the files its commands wrote and from the job's database.
"""

from __future__ import annotations

import itertools
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

import mapwise
from helpers.processes import pid_alive
from helpers.project import Project, mapreduce
from mapwise.cli.exit_codes import exit_code_for
from mapwise.domain.states import JobStatus

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells and groups")

SLEEP = 0.3


# -- durations -------------------------------------------------------------------------


def test_durations_are_never_shorter_than_the_sleep_for_any_outcome(project: Project) -> None:
    # Given a step that sleeps 0.3 s then succeeds, one that sleeps 0.3 s then exits 3, and
    # one that sleeps 5 s under a 0.3 s step timeout; setup and reduce sleep 0.3 s too
    items = [
        {"kind": "ok", "code": 0},
        {"kind": "fail", "code": 3},
        {"kind": "timeout", "code": 0},
    ]
    template: list[dict[str, Any] | str] = [
        {"shell": '[ "${item.kind}" != timeout ] || sleep 5', "timeout": SLEEP},
        "sleep 0.3; exit ${item.code}",
    ]
    project.workflow(
        mapreduce(
            template,
            id="${item.kind}",
            max_parallel=3,
            setup=["sleep 0.3"],
            reduce=["sleep 0.3"],
        ),
        items=items,
    )

    # When it runs
    result = project.run()

    # Then each outcome is what it should be
    db = project.db(result.job_id)
    assert db.statuses() == {"ok": "succeeded", "fail": "dlq", "timeout": "dlq"}
    attempts = {a["item_id"]: a for a in db.attempts()}
    assert attempts["fail"]["error_kind"] == "exit_code"
    assert attempts["fail"]["exit_code"] == 3
    assert attempts["timeout"]["error_kind"] == "timeout"
    # And no attempt, item or step lasted less than the real sleep
    for item_id, attempt in attempts.items():
        assert attempt["duration"] >= SLEEP, item_id
        assert db.item(item_id)["duration"] >= SLEEP, item_id
        steps = db.rows("SELECT * FROM steps WHERE attempt_id = ?", (attempt["id"],))
        assert max(s["duration"] for s in steps) >= SLEEP, item_id
    timed_out = db.rows(
        "SELECT s.* FROM steps s JOIN attempts a ON a.id = s.attempt_id "
        "JOIN items i ON i.idx = a.item_idx WHERE i.item_id = 'timeout'"
    )
    assert [(s["step_index"], s["timed_out"], s["error_kind"]) for s in timed_out] == [
        (0, 1, "timeout")
    ]
    assert timed_out[0]["duration"] >= SLEEP
    failed_step = db.rows(
        "SELECT s.* FROM steps s JOIN attempts a ON a.id = s.attempt_id "
        "JOIN items i ON i.idx = a.item_idx WHERE i.item_id = 'fail' AND s.step_index = 1"
    )[0]
    assert failed_step["exit_code"] == 3
    assert failed_step["duration"] >= SLEEP
    for phase in ("setup", "reduce"):
        (step,) = db.steps(phase)
        assert step["duration"] >= SLEEP, phase
    # And the job's reported durations add up to at least the sleeps
    durations = mapwise.job_status(result.job_id, project.state_dir).durations
    assert durations.compute_seconds >= 3 * SLEEP
    assert durations.wall_seconds >= 3 * SLEEP
    assert durations.item_seconds.max is not None
    assert durations.item_seconds.max >= SLEEP


def test_an_item_timeout_kills_the_commands_grandchildren(project: Project) -> None:
    # Given a template that starts a background sleep and a TERM-ignoring background
    # sleep, writes their pids, and waits, under a 0.5 s item timeout
    (project.root / "pids").mkdir()
    script = (
        'sleep 30 & echo $! > "pids/${item_id}.plain"; '
        'sh -c \'trap "" TERM; echo $$ > "$0"; exec sleep 30\' "pids/${item_id}.stubborn" & '
        "wait"
    )
    project.workflow(mapreduce([script], max_parallel=2, timeout=0.5), items=["a", "b"])

    # When it runs
    result = project.run()

    # Then both items timed out, and none of the processes they started is alive
    db = project.db(result.job_id)
    assert sorted(db.statuses().values()) == ["dlq", "dlq"]
    assert {a["error_kind"] for a in db.attempts()} == {"timeout"}
    assert pid_alive(os.getpid())  # the probe itself sees a live process
    pid_files = sorted((project.root / "pids").iterdir())
    assert [p.name for p in pid_files] == ["0.plain", "0.stubborn", "1.plain", "1.stubborn"]
    for pid_file in pid_files:
        pid = int(pid_file.read_text())
        assert not pid_alive(pid), f"{pid_file.name}: pid {pid} outlived its item"


# -- retries and the DLQ ---------------------------------------------------------------

FLAKY = (
    'n=$(cat "counts/${item_id}" 2>/dev/null || echo 0); n=$((n + 1)); '
    'echo "$n" > "counts/${item_id}"; echo "$MAPWISE_ATTEMPT" >> "seen/${item_id}"; '
    'echo "attempt $n of ${item_id}"; echo "failing $n" >&2; [ "$n" -ge 3 ]'
)


def _flaky_project(project: Project, retry: dict[str, Any]) -> None:
    """One item that fails twice, then succeeds (a counter file)."""
    (project.root / "counts").mkdir()
    (project.root / "seen").mkdir()
    project.workflow(mapreduce([FLAKY], id="${item.name}", retry=retry), items=[{"name": "flaky"}])


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [("fixed", [0.2, 0.2]), ("exponential", [0.1, 0.2])],
)
def test_an_item_that_fails_twice_succeeds_on_its_third_attempt(
    project: Project, backoff: str, delays: list[float]
) -> None:
    # Given an item that fails twice then succeeds, with three attempts allowed
    retry = {"max_attempts": 3, "backoff": backoff, "initial_delay": delays[0]}
    _flaky_project(project, retry)

    # When it runs
    result = project.run()

    # Then it succeeded with three attempts on record, each told its attempt number
    assert (result.status, result.succeeded, result.dlq, exit_code_for(result.outcome)) == (
        JobStatus.COMPLETED,
        1,
        0,
        0,
    )
    db = project.db(result.job_id)
    attempts = db.attempts("flaky")
    assert [a["attempt_no"] for a in attempts] == [1, 2, 3]
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "succeeded"]
    assert db.item("flaky")["attempts"] == 3
    assert project.lines("seen/flaky") == ["1", "2", "3"]
    # And each retry started at least its backoff after the previous attempt started
    starts = [a["started_at"] for a in attempts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    for delay, gap in zip(delays, gaps, strict=True):
        assert gap >= delay


def test_an_item_whose_attempts_are_spent_goes_to_the_dlq(project: Project) -> None:
    # Given the same flaky item with only two attempts allowed
    _flaky_project(project, {"max_attempts": 2, "backoff": "fixed", "initial_delay": 0.2})

    # When it runs
    result = project.run()

    # Then it is in the DLQ after two failed attempts, and the job exits 1
    assert (result.status, result.succeeded, result.dlq, exit_code_for(result.outcome)) == (
        JobStatus.COMPLETED,
        0,
        1,
        1,
    )
    db = project.db(result.job_id)
    attempts = db.attempts("flaky")
    assert [(a["attempt_no"], a["outcome"], a["exit_code"]) for a in attempts] == [
        (1, "failed", 1),
        (2, "failed", 1),
    ]
    assert attempts[1]["started_at"] - attempts[0]["started_at"] >= 0.2
    assert project.lines("seen/flaky") == ["1", "2"]
    (entry,) = mapwise.dlq_list(result.job_id, project.state_dir)
    assert (entry.item_id, entry.attempts, entry.error_kind, entry.exit_code) == (
        "flaky",
        2,
        "exit_code",
        1,
    )
    assert entry.last_error is not None
    assert "failing 2" in entry.last_error


DLQ_KEYS = {
    "item_id",
    "item",
    "attempts",
    "error_kind",
    "exit_code",
    "last_error",
    "failed_at",
    "duration_seconds",
}


def test_the_dlq_holds_exactly_the_failed_items_with_their_history(project: Project) -> None:
    # Given six items of which two always fail (exit 7), two attempts each
    items: list[dict[str, Any]] = [
        {"name": f"i{n}", "code": 7 if n in (1, 4) else 0} for n in range(6)
    ]
    project.workflow(
        mapreduce(
            ['echo "boom ${item.name}" >&2; exit ${item.code}'],
            id="${item.name}",
            max_parallel=3,
            retry={"max_attempts": 2, "backoff": "fixed", "initial_delay": 0},
        ),
        items=items,
    )

    # When it runs through the CLI
    run = project.run_cli("--quiet")
    assert run.returncode == 1, run.stderr

    # Then `dlq list --json` lists exactly the two, with their documented fields
    listing = project.inspect("dlq", "list", run.job_id, "--json")
    assert listing.returncode == 0, listing.stderr
    entries = {e["item_id"]: e for e in listing.json()}
    assert set(entries) == {"i1", "i4"}
    for name, entry in entries.items():
        assert set(entry) == DLQ_KEYS
        assert entry["item"] == {"name": name, "code": 7}
        assert (entry["attempts"], entry["error_kind"], entry["exit_code"]) == (
            2,
            "exit_code",
            7,
        )
        assert f"boom {name}" in entry["last_error"]
        assert entry["failed_at"].endswith("Z")
        assert isinstance(entry["duration_seconds"], int | float)
    # And the database holds their two failed attempts; the others succeeded at once
    db = project.db(run.job_id)
    for item in items:
        outcomes = [a["outcome"] for a in db.attempts(item["name"])]
        failing = item["code"] == 7
        assert outcomes == (["failed", "failed"] if failing else ["succeeded"]), item
    # And `dlq show` prints the attempt history with the error
    shown = project.inspect("dlq", "show", run.job_id, "i4")
    assert shown.returncode == 0, shown.stderr
    assert "attempt 1" in shown.stdout
    assert "attempt 2" in shown.stdout
    assert "boom i4" in shown.stdout


# -- error policy ----------------------------------------------------------------------


def _policy_project(
    project: Project, failing: set[int], count: int, policy: dict[str, Any]
) -> None:
    """``count`` items run one at a time; those in ``failing`` exit 1; each leaves a mark."""
    (project.root / "ran").mkdir()
    items = [{"n": n, "code": 1 if n in failing else 0} for n in range(count)]
    project.workflow(
        mapreduce(
            ['touch "ran/${item.n}"; exit ${item.code}'],
            id="item-${item.n}",
            max_parallel=1,
            reduce=["touch reduced"],
            error_policy=policy,
        ),
        items=items,
    )


def _assert_stopped(project: Project, job_id: str, *, ran: int, dlq: int) -> None:
    """The map phase stopped after ``ran`` items; reduce did not run; the rest are pending."""
    db = project.db(job_id)
    assert db.job()["status"] == "failed"
    assert not project.path("reduced").exists()
    assert db.rows("SELECT * FROM phase_steps WHERE phase = 'reduce'") == []
    assert sorted(int(n) for n in project.files("ran")) == list(range(ran))
    items = db.items()
    assert [i["status"] for i in items[ran:]] == ["pending"] * (len(items) - ran)
    assert all(i["attempts"] == 0 for i in items[ran:])
    assert sum(i["status"] == "dlq" for i in items) == dlq
    assert mapwise.job_status(job_id, project.state_dir).job.resumable


def test_on_item_failure_stop_fails_the_job_and_skips_reduce(project: Project) -> None:
    # Given ten items run one at a time, the third of which fails, and policy "stop"
    _policy_project(project, {2}, 10, {"on_item_failure": "stop"})

    # When it runs through the CLI
    run = project.run_cli("--quiet")

    # Then the job failed (exit 1) after the third item; the rest never ran
    assert run.returncode == 1, run.stderr
    assert "failed" in run.stderr
    _assert_stopped(project, run.job_id, ran=3, dlq=1)


def test_a_policy_stop_interrupts_the_items_still_running(project: Project) -> None:
    # Given six items, three at a time: the first fails at once, the next two take 30 s
    (project.root / "done").mkdir()
    items = [
        {"n": n, "code": 1 if n == 0 else 0, "sleep": 30 if n in (1, 2) else 0} for n in range(6)
    ]
    project.workflow(
        mapreduce(
            ['sleep ${item.sleep}; touch "done/${item.n}"; exit ${item.code}'],
            id="item-${item.n}",
            max_parallel=3,
            error_policy={"on_item_failure": "stop"},
        ),
        items=items,
    )

    # When it runs
    result = project.run()

    # Then the job failed; the running items were stopped, not finished, and stay pending
    # with their attempt recorded as interrupted (not counted); the rest never started
    assert (result.status, result.dlq, result.succeeded, result.pending) == (
        JobStatus.FAILED,
        1,
        0,
        5,
    )
    assert project.files("done") == {"0": ""}
    db = project.db(result.job_id)
    for n in (1, 2):
        item = db.item(f"item-{n}")
        assert (item["status"], item["attempts"]) == ("pending", 0)
        assert [a["outcome"] for a in db.attempts(f"item-{n}")] == ["interrupted"]
    for n in (3, 4, 5):
        assert db.attempts(f"item-{n}") == []


def test_max_failures_stops_once_the_dlq_reaches_it(project: Project) -> None:
    # Given ten failing items and max_failures 2
    _policy_project(project, set(range(10)), 10, {"max_failures": 2})

    # When it runs
    result = project.run()

    # Then the map phase stopped at the second DLQ item (prodigy's failed >= max_failures)
    assert (result.status, exit_code_for(result.outcome)) == (JobStatus.FAILED, 1)
    assert result.reason is not None
    assert "max_failures" in result.reason
    _assert_stopped(project, result.job_id, ran=2, dlq=2)


def test_failure_threshold_applies_only_after_ten_finished_items(project: Project) -> None:
    # Given twenty items: the first three fail (3/3 > 0.3, but fewer than 10 finished),
    # the next seven succeed (3/10 is not above 0.3), then every item fails
    failing = {0, 1, 2, *range(10, 20)}
    _policy_project(project, failing, 20, {"failure_threshold": 0.3})

    # When it runs
    result = project.run()

    # Then it stopped at the eleventh finished item (4/11 > 0.3)
    assert (result.status, exit_code_for(result.outcome)) == (JobStatus.FAILED, 1)
    assert (result.succeeded, result.dlq, result.pending) == (7, 4, 9)
    assert result.reason is not None
    assert "failure_threshold" in result.reason
    _assert_stopped(project, result.job_id, ran=11, dlq=4)


# -- reduce ----------------------------------------------------------------------------


def test_reduce_sees_the_map_counts_and_results(project: Project) -> None:
    # Given five items of which two fail
    items = [{"name": f"r{n}", "code": 1 if n in (1, 3) else 0} for n in range(5)]
    project.workflow(
        mapreduce(
            ["echo out-${item.name}; exit ${item.code}"],
            id="${item.name}",
            max_parallel=2,
            reduce=[
                'echo "${map.successful} ${map.failed} ${map.total}" > counts.txt',
                'cp "${map.results_file}" results.json',
                "printf '%s' '${map.results}' > inline.json",
            ],
        ),
        items=items,
    )

    # When it runs
    result = project.run()

    # Then reduce saw 3 succeeded, 2 failed, 5 in all
    assert exit_code_for(result.outcome) == 1
    assert project.read("counts.txt") == "3 2 5\n"
    # And the results file and the inline results hold every finished item
    from_file = json.loads(project.read("results.json"))
    inline = json.loads(project.read("inline.json"))
    assert from_file == inline
    assert {r["item_id"]: r["status"] for r in from_file} == {
        "r0": "succeeded",
        "r1": "failed",
        "r2": "succeeded",
        "r3": "failed",
        "r4": "succeeded",
    }
    assert {r["item_id"]: r["item"] for r in from_file} == {i["name"]: i for i in items}


@pytest.mark.slow
def test_the_results_file_holds_ten_thousand_items(project: Project) -> None:
    # Given 10,000 items whose template is `true`, eight at a time
    project.workflow(
        mapreduce(
            ["true"],
            max_parallel=8,
            reduce=['cp "${map.results_file}" results.json', 'echo "${map.successful}" > n'],
        ),
        items=list(range(10_000)),
    )

    # When it runs
    result = project.run()

    # Then every item succeeded and the results file parses, with one entry each
    assert (result.succeeded, result.dlq, exit_code_for(result.outcome)) == (10_000, 0, 0)
    rows = json.loads(project.read("results.json"))
    assert len(rows) == 10_000
    assert {r["item_id"] for r in rows} == {str(n) for n in range(10_000)}
    assert {r["status"] for r in rows} == {"succeeded"}
    assert project.read("n") == "10000\n"


# -- state files and job ids -----------------------------------------------------------


def _modes(paths: list[Path], root: Path) -> list[str]:
    """``path: mode`` of each path that is not 0700 (folders) or 0600 (files)."""
    wrong = []
    for path in paths:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != (0o700 if path.is_dir() else 0o600):
            wrong.append(f"{path.relative_to(root)}: {oct(mode)}")
    return wrong


def test_state_files_are_0600_and_folders_0700(project: Project) -> None:
    # Given a job that writes logs, item files and a results file, and that lists its own
    # job folder while it runs (the database's -wal/-shm, slot notes, item files exist then)
    live = (
        'find "${STATE}/jobs/$MAPWISE_JOB_ID" -exec stat -c "%a|%F|%n" {} + '
        '> "live-${item}" 2>/dev/null || true'  # a file may vanish between find and stat
    )
    project.workflow(
        mapreduce(
            ["echo out ${item}; echo err >&2", live],
            env={"STATE": str(project.state_dir)},
            setup=["echo setup"],
            reduce=['echo "${map.results_file}"'],
        ),
        items=["a", "b"],
    )

    # When it runs under umask 000, so that only explicit modes protect anything
    run = project.cli(
        "run",
        str(project.workflow_path),
        "--state-dir",
        str(project.state_dir),
        preexec_fn=lambda: os.umask(0),
    )
    assert run.returncode == 0, run.stderr

    # Then, during the run, every file was 0600 and every folder 0700
    for name in ("live-a", "live-b"):
        rows = [line.split("|", 2) for line in project.lines(name)]
        assert any(path.endswith("state.db") for _, _, path in rows)
        wrong = [
            f"{path}: {mode}"
            for mode, kind, path in rows
            if mode != ("700" if kind == "directory" else "600")
        ]
        assert wrong == [], name
    # And after it, the job folder and everything in it is private to the user
    job_dir = project.job_dir(run.job_id)
    for name in ("state.db", "lock"):
        assert stat.S_IMODE((job_dir / name).stat().st_mode) == 0o600, name
    assert (job_dir / "logs").is_dir()
    paths = [project.state_dir / "jobs", job_dir, *job_dir.rglob("*")]
    assert _modes(paths, project.state_dir) == []


def test_two_runs_in_the_same_second_get_different_job_ids(project: Project) -> None:
    # Given a quick workflow
    project.workflow(mapreduce(["true"]), items=["a"])

    # When it runs twice in a row (well within a second)
    first, second = project.run(), project.run()

    # Then the jobs have different ids and each has its own folder
    assert first.job_id != second.job_id
    assert project.job_dir(first.job_id).is_dir()
    assert project.job_dir(second.job_id).is_dir()
    from mapwise.store.paths import new_job_id

    assert len({new_job_id("t", now=1_700_000_000.0) for _ in range(20)}) == 20
