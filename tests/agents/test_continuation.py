"""An attempt stopped mid-template continues where it stopped (SPEC section 9,
"Continuing an attempt"): kill -9 or SIGINT of a real ``mapwise run``, then ``mapwise
resume``; ``retry.continue``; the cost ledger across a crash; worktree mode.

The coordinator runs as a real ``python -m mapwise`` subprocess in its own session and
the agent is the offline fake (examples/agent/fake_claude.py, docs/fake-agents.md). What
happened is read from the fake's invocation log (``FAKE_CLAUDE_LOG``: one line when a
run has its session, one when it ends), from the lines the shell steps append to a marks
file, and from the job's database and ``status``/``dlq show``. Nothing waits on time:
every wait is on a condition (a log line, a database row), bounded only against hangs.
The fake's log, the crash and the checks of a continued attempt are in
``helpers.continuation`` (tests/dask/test_dask_continuation.py uses them on Dask).
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.continuation import (
    IDS,
    ITEMS,
    check_continued,
    check_shown_resumed,
    crash,
    ends,
    fake_agent_workspace,
    kill_fake_agents,
    log_path,
    plan_note_work,
    run_cost,
    start_and_reach_work,
    starts,
    steps_recorded,
)
from helpers.jobs import Coordinator, Workspace, wait_until, workspace
from helpers.processes import job_processes
from helpers.project import FAKE_CLAUDE, KILL_GRACE

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc, POSIX groups")


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A workspace whose agent is the fake, logging to ``fake.log``; every process of
    the fake left by a failed test is killed afterwards."""
    yield from fake_agent_workspace(tmp_path, monkeypatch)


# -- kill -9 and SIGINT mid-agent -------------------------------------------------------


def test_kill9_mid_agent_resumes_the_agent_session_and_skips_the_steps_before(
    ws: Workspace,
) -> None:
    # Given a plan -> note -> work template on 3 items, all three running their (slow)
    # third step, the first two steps on record
    marks = plan_note_work(ws, work="work on ${item.id} [fake:sleep=60]")
    job = "crash"
    coordinator = start_and_reach_work(ws, job)

    # When the coordinator's process group is killed with kill -9, and the agents with it
    crash(coordinator, job)

    # Then the job is left resumable, its attempts running
    assert {a["outcome"] for a in ws.db(job).attempts()} == {"running"}

    # When the job is resumed
    done = ws.resume(job)

    # Then it completes; steps 1 and 2 did not run again, step 3 resumed its session in
    # the same folder with the continue prompt
    assert done.returncode == 0, done.stderr
    continued = check_continued(ws, job, marks)
    # And dlq show and status show the continued step
    check_shown_resumed(ws, job, continued)
    assert ws.live_commands() == [] and job_processes(job) == []


def test_sigint_mid_agent_stops_cleanly_and_resume_continues_the_session(ws: Workspace) -> None:
    # Given the same job, every item in its third step
    marks = plan_note_work(ws, work="work on ${item.id} [fake:sleep=60]")
    job = "sigint"
    coordinator = start_and_reach_work(ws, job)

    # When the coordinator gets SIGINT
    coordinator.send(signal.SIGINT)
    returncode = coordinator.wait()

    # Then it stops cleanly (exit 130) and its agents are gone
    assert returncode == 130, coordinator.stderr
    assert f"mapwise resume {job}" in coordinator.stderr
    wait_until(lambda: not job_processes(job), what="the agents to be stopped")
    assert {a["outcome"] for a in ws.db(job).attempts()} == {"interrupted"}

    # When the job is resumed
    done = ws.resume(job)

    # Then the interrupted agent steps were resumed with their sessions, and nothing
    # before them ran again
    assert done.returncode == 0, done.stderr
    continued = check_continued(ws, job, marks)
    check_shown_resumed(ws, job, continued)
    # And the stopped runs stay on the ledger (no result read, no cost), one per item
    stopped = ws.db(job).rows(
        "SELECT * FROM agent_runs WHERE step_index = 2 AND continued = 0 ORDER BY id"
    )
    assert len(stopped) == len(ITEMS)
    assert {(r["result_read"], r["cost_usd"]) for r in stopped} == {(0, None)}
    assert sorted(r["session_id"] for r in stopped) == sorted(
        run["session_id"] for run in continued.values()
    )


# -- shell steps only --------------------------------------------------------------------


def test_kill9_during_the_third_shell_step_keeps_the_first_steps_and_their_capture(
    ws: Workspace,
) -> None:
    # Given three shell steps: step 1 notes itself and captures a value unique to its run
    # (its shell's pid), step 2 notes itself, step 3 notes itself, writes the capture
    # to out/<id>, then blocks while the `first` flag exists
    marks, out, first = ws.path("marks"), ws.path("out"), ws.flag("first")
    marks.touch()
    out.mkdir()
    first.touch()
    ws.write_workflow(
        [
            {
                "shell": 'echo "s1 ${item.id}" >> "$MARKS"; echo "cap-${item.id}-$$"',
                "capture": "cap",
            },
            'echo "s2 ${item.id}" >> "$MARKS"',
            'echo "s3 ${item.id}" >> "$MARKS"; printf "%s\\n" "${cap}" >> "$OUT/${item.id}"; '
            'while [ -e "$FIRST" ]; do sleep 0.05; done',
        ],
        items=ITEMS,
        env={"MARKS": str(marks), "OUT": str(out), "FIRST": str(first)},
        max_parallel=3,
    )
    job = "shells"
    coordinator = ws.start_run(job)
    coordinator.wait_for(
        lambda: (
            sum(1 for line in marks.read_text().splitlines() if line.startswith("s3 "))
            == len(ITEMS)
        ),
        what="step 3 running for every item",
    )
    coordinator.wait_for(
        lambda: steps_recorded(ws, job, 2, len(ITEMS)),
        what="steps 1 and 2 on record",
    )
    captured = {i: (out / i).read_text().splitlines() for i in IDS}

    # When everything of the job is killed with kill -9, and the job resumed
    crash(coordinator, job)
    first.unlink()
    done = ws.resume(job)

    # Then it completes; steps 1 and 2 ran once per item, step 3 twice
    assert done.returncode == 0, done.stderr
    lines = marks.read_text().splitlines()
    for item_id in IDS:
        assert lines.count(f"s1 {item_id}") == 1, lines
        assert lines.count(f"s2 {item_id}") == 1, lines
        assert lines.count(f"s3 {item_id}") == 2, lines
    # And step 3 saw the value step 1 captured before the crash, both times
    for item_id in IDS:
        [value] = captured[item_id]
        assert value.startswith(f"cap-{item_id}-")
        assert (out / item_id).read_text().splitlines() == [value, value]
    db = ws.db(job)
    for item_id in IDS:
        attempts = db.attempts(item_id)
        assert [a["outcome"] for a in attempts] == ["interrupted", "succeeded"]
        assert attempts[1]["resume_from"] == 2


# -- retry.continue ------------------------------------------------------------------------


@pytest.mark.parametrize("continued", [True, False], ids=["continue", "start-over"])
def test_retry_continue_resumes_the_failed_attempts_session(ws: Workspace, continued: bool) -> None:
    # Given one item whose agent step runs out of turns when started with its prompt
    # (the directive is in the prompt; a continued run gets the continue prompt, which
    # has none, and succeeds), two attempts, with or without retry.continue
    retry: dict[str, Any] = {"max_attempts": 2, "initial_delay": 0}
    if continued:
        retry["continue"] = True
    ws.write_workflow(
        [
            {
                "claude": "task ${item.id} [fake:result=error_max_turns]",
                "continue_prompt": "carry on",
            }
        ],
        items=[{"id": "a"}],
        retry=retry,
    )
    job = f"retry-{'continue' if continued else 'new'}"

    # When the job runs
    done = ws.finish(ws.start_run(job))

    log = log_path(ws)
    runs = starts(log)
    assert len(runs) == 2, runs
    first, second = runs
    assert (first["mode"], first["prompt"]) == ("new", "task a [fake:result=error_max_turns]")
    ended = {line["pid"]: line for line in ends(log)}
    assert ended[first["pid"]]["subtype"] == "error_max_turns"
    attempts = ws.db(job).attempts("a")
    if continued:
        # Then the second attempt resumed the first one's session with the continue
        # prompt, and the item succeeded
        assert done.returncode == 0, done.stderr
        assert second["mode"] == "resume"
        assert second["session_id"] == first["session_id"]
        assert second["prompt"] == "carry on"
        assert ended[second["pid"]]["subtype"] == "success"
        assert [a["outcome"] for a in attempts] == ["failed", "succeeded"]
        shown = ws.inspect("dlq", "show", job, "a").stdout
        assert f"step 1 claude session {first['session_id']} (resumed): success" in shown
    else:
        # Then the second attempt started a new session with the prompt, and failed again
        assert done.returncode != 0, done.stderr
        assert second["mode"] == "new"
        assert second["session_id"] != first["session_id"]
        assert second["prompt"] == first["prompt"]
        assert [a["outcome"] for a in attempts] == ["failed", "failed"]
        assert {a["error_kind"] for a in attempts} == {"agent_error"}
        assert ws.db(job).item("a")["status"] == "dlq"


# -- the ledger across a crash -------------------------------------------------------------


def test_the_ledger_after_kill9_and_resume_counts_every_run_that_ended(ws: Workspace) -> None:
    # Given plan -> note -> work with costs: plans $0.10, work runs killed before they
    # report, continued runs $0.05 (the continue prompt's own cost)
    plan_note_work(ws, work="work on ${item.id} [fake:cost=0.25] [fake:sleep=60]")
    spec = json.loads(ws.workflow_path.read_text())
    template = spec["map"]["agent_template"]
    template[0]["claude"] += " [fake:cost=0.1]"
    template[2]["continue_prompt"] = "go on [fake:cost=0.05]"
    ws.workflow_path.write_text(json.dumps(spec))
    job = "ledger"
    coordinator = start_and_reach_work(ws, job)

    # When everything of the job is killed with kill -9 during step 3, and it resumes
    crash(coordinator, job)
    done = ws.resume(job)
    assert done.returncode == 0, done.stderr

    # Then the job's cost is the sum of the costs of the runs that reached their end
    log = log_path(ws)
    by_pid = {line["pid"]: line for line in starts(log)}
    finished = ends(log)
    assert len(finished) == 2 * len(ITEMS)  # 3 plans, 3 continued work runs
    expected = sum(run_cost(by_pid[line["pid"]]) for line in finished)
    assert expected == pytest.approx(3 * 0.1 + 3 * 0.05)
    report = ws.inspect("status", job, "--json").json()
    cost = report["cost"]
    assert cost["usd"] == pytest.approx(expected)
    # And every run that ended is one ledger row, every session counted once
    assert cost["agent_runs"] == len(finished)
    assert cost["sessions"] == len({line["session_id"] for line in starts(log)})
    assert cost["sessions"] == 2 * len(ITEMS)
    assert cost["resumed_runs"] == len(ITEMS)
    rows = ws.db(job).rows("SELECT * FROM agent_runs ORDER BY id")
    assert sum(1 for r in rows if r["continued"]) == len(ITEMS)
    assert sum(r["cost_usd"] or 0 for r in rows) == pytest.approx(expected)
    # And each item's own cost is its plan and its continued run
    items = ws.inspect("status", job, "--items", "--json").json()
    for item in items["items"]:
        assert item["cost"]["usd"] == pytest.approx(0.15), item


# -- worktree mode ---------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {args}: {done.stderr}"
    return done.stdout


@pytest.fixture
def repo_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Workspace]]:
    """A git repository (its own git config only) and a workspace outside it, whose
    coordinators run from the repository's checkout."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "--quiet", "--initial-branch=main")
    _git(repo, "config", "user.name", "Repo Owner")
    _git(repo, "config", "user.email", "owner@example.com")
    (repo / "README.md").write_text("# demo\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "first")
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("MAPWISE_CLAUDE", shlex.join([sys.executable, str(FAKE_CLAUDE)]))
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(outside / "fake.log"))
    monkeypatch.setenv("MAPWISE_KILL_GRACE", KILL_GRACE)
    gen = workspace(outside, monkeypatch)  # the state dir lives outside the repository
    try:
        yield repo, next(gen)
    finally:
        next(gen, None)  # the workspace's own cleanup
        kill_fake_agents(outside / "fake.log")


def test_worktree_kill9_resumes_the_agent_in_the_items_worktree(
    repo_ws: tuple[Path, Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worktree job in a repository: a shell step notes its worktree, then a
    # slow agent step; its continued run edits agent.txt
    repo, ws = repo_ws
    where = ws.path("where")
    where.mkdir()
    spec = {
        "name": "wt",
        "workspace": "worktree",
        "env": {"WHERE": str(where)},
        "map": {
            "input": "items.json",
            "id": "${item.id}",
            "max_parallel": 2,
            "agent_template": [
                {"shell": 'printf "%s\\n" "$(pwd -P)" > "$WHERE/${item.id}"'},
                {
                    "claude": "work on ${item.id} [fake:sleep=60]",
                    "continue_prompt": "go on [fake:edit=agent-${item.id}.txt]",
                },
            ],
        },
    }
    (repo / "wf.yml").write_text(json.dumps(spec))
    (repo / "items.json").write_text(json.dumps(ITEMS[:2]))
    monkeypatch.chdir(repo)
    job = "wt"
    coordinator = Coordinator(
        ["run", str(repo / "wf.yml"), "--job-id", job, "--state-dir", str(ws.state_dir), "-q"],
        cwd=repo,
        env=ws.env(),
    )
    ws.coordinators.append(coordinator)
    log = log_path(ws)
    coordinator.wait_for(
        lambda: len(starts(log, "work on")) == 2,
        what="the agent step running for both items",
    )
    coordinator.wait_for(
        lambda: steps_recorded(ws, job, 1, 2),
        what="step 1 on record",
    )

    # When everything of the job is killed with kill -9, and the job resumed
    crash(coordinator, job)
    resumed = Coordinator(
        ["resume", job, "--state-dir", str(ws.state_dir), "-q"], cwd=repo, env=ws.env()
    )
    ws.coordinators.append(resumed)
    code = resumed.wait()
    assert code == 0, resumed.stderr

    # Then each item's agent was resumed with its session, in the item's worktree
    first = {line["prompt"].split()[2]: line for line in starts(log, "work on")}
    again = {line["session_id"]: line for line in starts(log, mode="resume")}
    assert len(again) == 2
    pool = (ws.state_dir / "jobs" / job / "worktrees").resolve()
    for item_id in ("a", "b"):
        began = first[item_id]
        worktree = Path((where / item_id).read_text().strip())
        assert worktree.parent == pool
        assert Path(began["cwd"]).resolve() == worktree
        continued = again[began["session_id"]]
        assert Path(continued["cwd"]).resolve() == worktree
        assert continued["prompt"] == f"go on [fake:edit=agent-{item_id}.txt]"
        # And the continued run's edit was committed and merged into the job branch
        edited = _git(repo, "show", f"mapwise/{job}/result:agent-{item_id}.txt")
        assert edited == f"edited by session {began['session_id']} (resumed)\n"
