"""The command line contract (commands, exit codes, output), through the real
``python -m mapwise``.

Exit codes, the ``job <id>`` first line, ``--json`` shapes of ``status``, ``jobs`` and
``dlq list``, ``validate``, ``logs``, ``--version``, and progress output without a terminal.
Read-only commands share one finished job (``finished``) to keep the suite fast.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mapwise
from helpers.project import KILL_GRACE, CliRun, Project, mapreduce, run_main

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells and groups")

PROGRESS_KEYS = {
    "total_items",
    "completed_items",
    "failed_items",
    "pending_items",
    "purged_items",
    "completion_percentage",
}
JOB_KEYS = {
    "job_id",
    "workflow_name",
    "status",
    "resumable",
    "started_at",
    "updated_at",
    "cost",  # SPEC section 9: what the job's agents spent (zeros without agent steps)
    "progress",
    "estimated_remaining_seconds",
}
STATUS_KEYS = JOB_KEYS | {"phase", "runs", "durations", "dlq_count", "checkpoints"}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")

# "ok" succeeds, "flaky" fails its first two attempts, "bad" always exits 9; each attempt
# prints a line on stdout and one on stderr.
MIXED = (
    'echo "attempt $MAPWISE_ATTEMPT of ${item_id}"; '
    'echo "stderr of ${item_id} $MAPWISE_ATTEMPT" >&2; '
    'case "${item.mode}" in ok) exit 0;; flaky) [ "$MAPWISE_ATTEMPT" -ge 3 ];; *) exit 9;; esac'
)
MIXED_ITEMS = [
    {"name": "ok", "mode": "ok"},
    {"name": "flaky", "mode": "flaky"},
    {"name": "bad", "mode": "bad"},
]


def mixed_workflow() -> dict[str, object]:
    return mapreduce(
        [MIXED],
        name="mixed",
        id="${item.name}",
        max_parallel=2,
        retry={"max_attempts": 3, "backoff": "fixed", "initial_delay": 0.05},
        reduce=['echo "reduced ${map.successful}/${map.total}"'],
    )


@dataclass(frozen=True)
class Finished:
    """A project holding two finished jobs: ``mixed`` (one item in the DLQ) and ``clean``."""

    project: Project
    mixed: CliRun
    clean: CliRun


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Finished]:
    project = Project(tmp_path_factory.mktemp("cli"))
    project.workflow(mixed_workflow(), items=MIXED_ITEMS)
    env = {"MAPWISE_KILL_GRACE": KILL_GRACE}
    mixed = project.run_cli(env=env)
    project.write("clean.yml", json.dumps(mapreduce(["true"], name="clean")))
    clean = project.cli("run", "clean.yml", "--state-dir", str(project.state_dir), env=env)
    yield Finished(project, mixed, clean)


def no_traceback(run: CliRun) -> None:
    assert "Traceback" not in run.stderr, run.stderr
    assert "Traceback" not in run.stdout, run.stdout


# -- run: the first line and exit codes ------------------------------------------------


def test_version(project: Project) -> None:
    run = project.cli("--version")  # the real `python -m mapwise`
    assert run.returncode == 0, run.stderr
    assert mapwise.__version__ in run.stdout


def test_the_real_entry_point_maps_an_unknown_job_to_exit_2(project: Project) -> None:
    run = project.cli("status", "no-such-job", "--state-dir", str(project.state_dir))
    assert run.returncode == 2
    assert "no-such-job" in run.stderr
    no_traceback(run)


def test_run_exits_0_when_every_item_succeeded(finished: Finished) -> None:
    run = finished.clean
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[0] == f"job {run.job_id}"
    assert (finished.project.job_dir(run.job_id) / "state.db").is_file()
    assert f"job {run.job_id} completed" in run.stderr


def test_run_exits_1_when_items_are_in_the_dlq(finished: Finished) -> None:
    run = finished.mixed
    assert run.returncode == 1, run.stderr
    assert run.stderr.splitlines()[0] == f"job {run.job_id}"
    assert "1 in the DLQ" in run.stderr
    no_traceback(run)


def test_the_job_line_comes_before_warnings(project: Project) -> None:
    # Given a workflow with a prodigy key mapwise ignores (a warning)
    project.workflow(
        '{"name": "w", "merge": {"commands": []},\n'
        ' "map": {"input": "items.json", "agent_template": [{"shell": "true"}]}}\n',
        items=[1],
    )

    # When it runs, then `job <id>` is still the first line, and the warning names the key
    run = project.run_cli("--quiet")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == f"job {run.job_id}"
    assert any("merge" in line for line in lines[1:])


def test_a_bad_workflow_exits_2_naming_file_and_line(project: Project) -> None:
    # Given a workflow with a bad value on line 4 and an unknown key on line 7
    project.workflow(
        """\
        name: bad
        map:
          input: items.json
          max_parallel: 0
          agent_template:
            - shell: "true"
              bogus: 1
        """,
        items=[1],
    )

    # When it is run or validated
    for run in (project.run_cli(), run_main("validate", str(project.workflow_path))):
        # Then it exits 2 with both problems located, and no traceback
        assert run.returncode == 2, run.stderr
        no_traceback(run)
        assert "wf.yml:4" in run.stderr
        assert "max_parallel" in run.stderr
        assert "wf.yml:7" in run.stderr
        assert "bogus" in run.stderr
    # And no job was made
    assert not (project.state_dir / "jobs").exists() or not any(
        (project.state_dir / "jobs").iterdir()
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--max-parallel", "0"), "max-parallel"),
        (("--job-id", "../escape"), "invalid job id"),
        (("--no-such-option",), "no-such-option"),
    ],
)
def test_bad_run_options_exit_2(project: Project, args: tuple[str, ...], expected: str) -> None:
    # Given a valid workflow, when `run` gets a bad option (in-process: nothing may run)
    project.workflow(mapreduce(["touch ran"]), items=[1])
    run = run_main("run", str(project.workflow_path), "--state-dir", str(project.state_dir), *args)

    # Then it exits 2 with a message, no traceback, and nothing ran
    assert run.returncode == 2, run.stderr
    no_traceback(run)
    assert expected in run.stderr
    assert not project.path("ran").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("status", "no-such-job"),
        ("status", "no-such-job", "--json"),
        ("dlq", "list", "no-such-job"),
        ("dlq", "show", "no-such-job", "x"),
        ("logs", "no-such-job", "x"),
    ],
)
def test_an_unknown_job_exits_2(finished: Finished, args: tuple[str, ...]) -> None:
    run = finished.project.inspect(*args)
    assert run.returncode == 2
    no_traceback(run)
    assert "no-such-job" in run.stderr


def test_an_unknown_item_exits_2(finished: Finished) -> None:
    for args in (("dlq", "show"), ("logs",)):
        run = finished.project.inspect(*args, finished.mixed.job_id, "no-such-item")
        assert run.returncode == 2, args
        no_traceback(run)
        assert "no-such-item" in run.stderr


def test_a_chosen_job_id_is_used_and_cannot_be_reused(project: Project) -> None:
    # Given a quick workflow
    project.workflow(mapreduce(["true"]), items=["a"])

    # When it runs with --job-id
    first = project.run_cli("--job-id", "my-job.1")

    # Then that id is the job's
    assert first.returncode == 0, first.stderr
    assert first.job_id == "my-job.1"
    assert project.db("my-job.1").job()["job_id"] == "my-job.1"

    # When the same id is used again
    again = project.run_cli("--job-id", "my-job.1")

    # Then it is refused (exit 2) without a traceback, and the first job is untouched
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    db = project.db("my-job.1")
    assert db.job()["status"] == "completed"
    assert len(db.rows("SELECT * FROM runs")) == 1


# -- status, jobs, dlq -----------------------------------------------------------------


def test_status_json_has_exactly_the_spec_keys(finished: Finished) -> None:
    job_id = finished.mixed.job_id
    run = finished.project.inspect("status", job_id, "--json")
    assert run.returncode == 0, run.stderr
    data = run.json()

    assert set(data) == STATUS_KEYS
    assert set(data["progress"]) == PROGRESS_KEYS
    assert set(data["durations"]) == {"wall_seconds", "compute_seconds", "item_seconds"}
    assert set(data["durations"]["item_seconds"]) == {"mean", "p50", "p95", "max"}
    assert [set(r) for r in data["runs"]] == [{"started_at", "ended_at", "outcome"}]

    assert (data["job_id"], data["workflow_name"], data["status"]) == (
        job_id,
        "mixed",
        "completed",
    )
    assert (data["phase"], data["resumable"], data["dlq_count"]) == ("done", True, 1)
    assert data["progress"] == {
        "total_items": 3,
        "completed_items": 2,
        "failed_items": 1,
        "pending_items": 0,
        "purged_items": 0,
        "completion_percentage": pytest.approx(66.67, abs=0.01),
    }
    assert data["runs"][0]["outcome"] == "completed"
    for stamp in (data["started_at"], data["updated_at"], *data["runs"][0].values()):
        if stamp != "completed":
            assert ISO_UTC.match(stamp), stamp
    assert data["durations"]["compute_seconds"] >= 0
    assert isinstance(data["checkpoints"], int)


def test_status_items_only_with_the_flag(finished: Finished) -> None:
    job_id = finished.mixed.job_id
    run = finished.project.inspect("status", job_id, "--json", "--items")
    assert run.returncode == 0, run.stderr
    data = run.json()
    assert set(data) == STATUS_KEYS | {"items"}
    by_id = {i["item_id"]: i for i in data["items"]}
    assert {k: set(v) for k, v in by_id.items()} == {
        name: {"item_id", "status", "attempts", "duration_seconds"}
        for name in ("ok", "flaky", "bad")
    }
    assert {k: (v["status"], v["attempts"]) for k, v in by_id.items()} == {
        "ok": ("succeeded", 1),
        "flaky": ("succeeded", 3),
        "bad": ("dlq", 3),
    }
    # And the human form lists them too
    text = finished.project.inspect("status", job_id, "--items")
    assert text.returncode == 0, text.stderr
    assert "flaky" in text.stdout
    assert "completed" in text.stdout


def test_jobs_lists_resumable_jobs_and_all_with_the_flag(finished: Finished) -> None:
    mixed, clean = finished.mixed.job_id, finished.clean.job_id

    resumable = finished.project.inspect("jobs", "--json")
    assert resumable.returncode == 0, resumable.stderr
    listed = resumable.json()
    assert [j["job_id"] for j in listed] == [mixed]
    assert set(listed[0]) == JOB_KEYS
    assert set(listed[0]["progress"]) == PROGRESS_KEYS
    assert (listed[0]["status"], listed[0]["resumable"]) == ("completed", True)

    everything = finished.project.inspect("jobs", "--all", "--json")
    assert everything.returncode == 0, everything.stderr
    by_id = {j["job_id"]: j for j in everything.json()}
    assert set(by_id) == {mixed, clean}
    assert (by_id[clean]["status"], by_id[clean]["resumable"]) == ("completed", False)
    assert all(set(j) == JOB_KEYS for j in by_id.values())

    table = finished.project.inspect("jobs", "--all")
    assert mixed in table.stdout
    assert clean in table.stdout


def test_dlq_list_shows_the_failed_item(finished: Finished) -> None:
    job_id = finished.mixed.job_id
    listed = finished.project.inspect("dlq", "list", job_id, "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = listed.json()
    assert (entry["item_id"], entry["attempts"], entry["exit_code"]) == ("bad", 3, 9)
    assert entry["item"] == {"name": "bad", "mode": "bad"}

    table = finished.project.inspect("dlq", "list", job_id)
    assert table.returncode == 0, table.stderr
    assert "bad" in table.stdout

    clean = finished.project.inspect("dlq", "list", finished.clean.job_id, "--json")
    assert clean.returncode == 0, clean.stderr
    assert clean.json() == []


# -- logs and validate -----------------------------------------------------------------


def test_logs_prints_an_attempts_output(finished: Finished) -> None:
    job_id = finished.mixed.job_id

    last = finished.project.inspect("logs", job_id, "flaky")
    assert last.returncode == 0, last.stderr
    assert "attempt 3 of flaky" in last.stdout
    assert "stderr of flaky 3" in last.stdout

    first = finished.project.inspect("logs", job_id, "flaky", "--attempt", "1")
    assert first.returncode == 0, first.stderr
    assert "attempt 1 of flaky" in first.stdout
    assert "attempt 3 of flaky" not in first.stdout

    missing = finished.project.inspect("logs", job_id, "flaky", "--attempt", "7")
    assert missing.returncode == 2
    no_traceback(missing)


def test_validate_prints_the_item_count_and_the_first_items(project: Project) -> None:
    # Given a workflow whose filter keeps seven of nine items
    project.workflow(
        mapreduce(["true"], filter="n > 1", id="item-${item.n}"),
        items=[{"n": n} for n in range(9)],
    )

    # When it is validated
    run = run_main("validate", str(project.workflow_path))

    # Then it says it is valid, with the count and the first items (not all seven)
    assert run.returncode == 0, run.stderr
    assert "valid" in run.stdout
    assert "items: 7" in run.stdout
    assert "item-2" in run.stdout
    assert "item-8" not in run.stdout
    assert "2 more" in run.stdout
    # And nothing ran: no state was made
    assert not project.state_dir.exists()
    assert not Path(project.root / ".mapwise").exists()


# -- progress output -------------------------------------------------------------------


def _progress_project(project: Project) -> None:
    project.workflow(
        mapreduce(
            ['echo "out ${item}"'],
            setup=["true"],
            reduce=['echo "reduced ${map.successful}"'],
            max_parallel=2,
        ),
        items=list(range(6)),
    )


def test_a_run_without_a_terminal_prints_progress_lines(project: Project) -> None:
    _progress_project(project)
    run = project.run_cli()
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    progress = [line for line in lines if re.match(r"^map: \d+/6 done", line)]
    assert progress, run.stderr
    assert progress[-1].startswith("map: 6/6 done")
    assert "\x1b[" not in run.stderr  # no terminal control codes in a pipe


def test_quiet_prints_only_the_job_line_and_the_summary(project: Project) -> None:
    _progress_project(project)
    run = project.run_cli("--quiet")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == f"job {run.job_id}"
    assert lines[1].startswith(f"job {run.job_id} completed: 6 succeeded")
    assert len(lines) == 2, run.stderr
    # And reduce's own output still reaches standard output (it is the job's result)
    assert "reduced 6" in run.stdout
