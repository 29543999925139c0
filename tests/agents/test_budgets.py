"""Budgets of agent jobs (SPEC section 9, "Budgets"): the job's (``--max-cost`` on
``run`` and ``resume``, or ``error_policy.max_cost_usd``) and the item's
(``map.max_cost_usd``, passed to claude as ``--max-budget-usd``).

Jobs run through the real command line in a subprocess with the offline fake agent
(examples/agent/fake_claude.py); each run's cost is a ``[fake:cost=X]`` directive in its
prompt, and what ran is read from the fake's invocation log (``FAKE_CLAUDE_LOG``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.project import CliRun, Project, mapreduce

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX subprocesses")

JOB = "J"
IDS = [f"i{n}" for n in range(6)]
ITEM_COST = 0.5


@pytest.fixture
def log(project: Project, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake agent's invocation log of this test."""
    path = project.path("fake.log")
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(path))
    return path


def fake_starts(log: Path) -> list[dict[str, Any]]:
    """The start line of every run of the fake (one per run, killed or not)."""
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [line for line in lines if not line["ended"]]


def fake_ends(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [line for line in lines if line["ended"]]


def prompts_run(log: Path) -> list[str]:
    return [line["prompt"] for line in fake_starts(log)]


def status(project: Project) -> dict[str, Any]:
    shown = project.inspect("status", JOB, "--json")
    assert shown.returncode == 0, shown.stderr
    result: dict[str, Any] = shown.json()
    return result


def reason(project: Project) -> str:
    """The ``reason`` line of the text ``status`` (``status --json`` has no reason)."""
    shown = project.inspect("status", JOB)
    assert shown.returncode == 0, shown.stderr
    found = [line for line in shown.stdout.splitlines() if line.startswith("reason ")]
    assert found, shown.stdout
    return found[0].removeprefix("reason").strip()


def no_traceback(done: CliRun) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr


def six_items_of(project: Project, *, error_policy: dict[str, Any] | None = None) -> None:
    """Six items, one at a time, each one claude run costing $0.50."""
    project.workflow(
        mapreduce(
            [{"claude": "do ${item.id} [fake:cost=" + str(ITEM_COST) + "]"}],
            id="${item.id}",
            max_parallel=1,
            error_policy=error_policy,
        ),
        items=[{"id": i} for i in IDS],
    )


def check_stopped_by_budget(project: Project, done: CliRun, log: Path) -> None:
    """Three items ran ($0.50, $1.00, $1.50: the third reached $1.20), then none."""
    no_traceback(done)
    assert done.returncode == 1, done.stderr
    assert f"mapwise resume {JOB}" in done.stderr and "--max-cost" in done.stderr
    report = status(project)
    assert (report["status"], report["resumable"]) == ("failed", True)
    assert reason(project).startswith("budget:")
    assert report["progress"]["completed_items"] == 3
    assert report["progress"]["pending_items"] == 3
    assert report["cost"]["usd"] == pytest.approx(3 * ITEM_COST)
    assert len(prompts_run(log)) == 3


def check_budget_holds_then_a_higher_one_finishes(project: Project, log: Path) -> None:
    """``resume`` alone stops again at once; ``resume --max-cost 10`` finishes the job,
    each item having run once."""
    # When the job is resumed without a new budget
    again = project.cli("resume", JOB, "--state-dir", str(project.state_dir))

    # Then it stops at once: exit 1, no agent ran
    no_traceback(again)
    assert again.returncode == 1, again.stderr
    assert len(prompts_run(log)) == 3
    assert status(project)["status"] == "failed"
    assert reason(project).startswith("budget:")

    # When it is resumed with a higher budget
    higher = project.cli("resume", JOB, "--state-dir", str(project.state_dir), "--max-cost", "10")

    # Then it completes; every item ran exactly once, $3.00 in all
    assert higher.returncode == 0, higher.stderr
    report = status(project)
    assert report["status"] == "completed"
    assert report["cost"]["usd"] == pytest.approx(len(IDS) * ITEM_COST)
    assert report["cost"]["agent_runs"] == len(IDS)
    assert sorted(prompts_run(log)) == sorted(f"do {i} [fake:cost={ITEM_COST}]" for i in IDS)
    assert {r["status"] for r in project.db(JOB).items()} == {"succeeded"}


# -- the job's budget ------------------------------------------------------------------------


def test_a_budget_reached_by_the_last_items_holds_nothing_back(project: Project, log: Path) -> None:
    # Given six items of $0.50 each and a budget the six reach exactly
    six_items_of(project)

    # When the job runs with --max-cost 3
    done = project.run_cli("--job-id", JOB, "--max-cost", "3")

    # Then it completes (no item was kept from running): exit 0, reduce ran
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    report = status(project)
    assert (report["status"], report["phase"]) == ("completed", "done")
    assert report["cost"]["usd"] == pytest.approx(3.0)
    assert len(prompts_run(log)) == len(IDS)


def test_max_cost_stops_new_items_once_spent_and_a_higher_budget_goes_on(
    project: Project, log: Path
) -> None:
    # Given six items of $0.50 each, one at a time
    six_items_of(project)

    # When the job runs with --max-cost 1.2
    done = project.run_cli("--job-id", JOB, "--max-cost", "1.2")

    # Then it stops after the third item (the recorded cost reached the budget): failed,
    # reason budget, resumable
    check_stopped_by_budget(project, done, log)
    # And a plain resume keeps the stored budget; a higher one finishes the job
    check_budget_holds_then_a_higher_one_finishes(project, log)


def test_error_policy_max_cost_usd_is_the_same_budget(project: Project, log: Path) -> None:
    # Given the same six items with error_policy.max_cost_usd: 1.2
    six_items_of(project, error_policy={"max_cost_usd": 1.2})

    # When the job runs
    done = project.run_cli("--job-id", JOB)

    # Then the budget stops it as --max-cost would, and --max-cost on resume overrides it
    check_stopped_by_budget(project, done, log)
    check_budget_holds_then_a_higher_one_finishes(project, log)


@pytest.mark.parametrize("value", ["-1", "0", "nan", "abc"])
def test_a_bad_max_cost_exits_2_on_run_and_on_resume(
    project: Project, log: Path, value: str
) -> None:
    # Given a workflow of agent items
    six_items_of(project)

    # When it is run with a bad --max-cost
    done = project.run_cli("--job-id", JOB, "--max-cost", value)

    # Then the command line refuses it: exit 2, a message naming the option, no job
    no_traceback(done)
    assert done.returncode == 2, done.stderr
    assert "--max-cost" in done.stderr
    assert not (project.state_dir / "jobs" / JOB).exists()
    assert prompts_run(log) == []

    # Given a job stopped by its budget (one item ran)
    stopped = project.run_cli("--job-id", JOB, "--max-cost", "0.4")
    assert stopped.returncode == 1, stopped.stderr
    runs = len(project.db(JOB).runs())

    # When it is resumed with the bad value
    again = project.cli("resume", JOB, "--state-dir", str(project.state_dir), "--max-cost", value)

    # Then resume refuses it the same way, and the job is untouched
    no_traceback(again)
    assert again.returncode == 2, again.stderr
    assert "--max-cost" in again.stderr
    assert len(project.db(JOB).runs()) == runs
    assert len(prompts_run(log)) == 1


@pytest.mark.parametrize("value", [-1, 0])
def test_a_bad_error_policy_max_cost_usd_is_a_validation_error(
    project: Project, log: Path, value: float
) -> None:
    # Given a workflow whose job budget is not a positive amount
    six_items_of(project, error_policy={"max_cost_usd": value})

    # When it is run
    done = project.run_cli("--job-id", JOB)

    # Then it is refused as an invalid workflow: exit 2, the key named, no job, no run
    no_traceback(done)
    assert done.returncode == 2, done.stderr
    assert "max_cost_usd" in done.stderr
    assert not (project.state_dir / "jobs" / JOB).exists()
    assert prompts_run(log) == []


# -- the item's budget -----------------------------------------------------------------------


def test_item_budget_is_passed_to_claude_and_a_spent_budget_fails_the_item(
    project: Project, log: Path
) -> None:
    # Given one item with map.max_cost_usd 0.3, two attempts, and a template of two claude
    # steps that each cost $0.20
    project.workflow(
        mapreduce(
            [
                {"claude": "one ${item.id} [fake:cost=0.2]"},
                {"claude": "two ${item.id} [fake:cost=0.2]"},
            ],
            id="${item.id}",
            max_cost_usd=0.3,
            retry={"max_attempts": 2, "initial_delay": 0},
        ),
        items=[{"id": "a"}],
    )

    # When the job runs
    done = project.run_cli("--job-id", JOB)
    no_traceback(done)

    # Then the first step was given the whole budget, the second what was left of it
    first, second = fake_starts(log)
    assert first["prompt"] == "one a [fake:cost=0.2]"
    assert second["prompt"] == "two a [fake:cost=0.2]"
    budget_arg = "--max-budget-usd"
    assert first["argv"][first["argv"].index(budget_arg) + 1] == "0.300000"
    assert second["argv"][second["argv"].index(budget_arg) + 1] == "0.100000"
    # And the second, asked to spend more than that, reported error_max_budget_usd
    assert [line["subtype"] for line in fake_ends(log)] == ["success", "error_max_budget_usd"]
    # And the attempt failed with agent_error
    attempts = project.db(JOB).attempts("a")
    assert len(attempts) == 2
    assert (attempts[0]["outcome"], attempts[0]["error_kind"]) == ("failed", "agent_error")
    # And the retry, its item's budget spent, failed at once without starting the agent
    assert (attempts[1]["outcome"], attempts[1]["error_kind"]) == ("failed", "agent_error")
    assert len(fake_starts(log)) == 2
    item = project.db(JOB).item("a")
    assert item["status"] == "dlq"
    assert "budget (map.max_cost_usd) is spent" in item["last_error"]
    # And the item's cost is what the agent reported: $0.20 + $0.10
    [entry] = project.inspect("dlq", "list", JOB, "--json").json()
    assert entry["error_kind"] == "agent_error"
    assert entry["cost"]["usd"] == pytest.approx(0.3)
    assert entry["cost"]["agent_runs"] == 2
