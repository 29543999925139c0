"""Attempts stopped mid-template and continued (SPEC section 9, "Continuing an attempt"):
the fake agent's invocation log, a crash of everything a job runs, and the checks that
an attempt went on after its finished steps and resumed its agent's session.

The agent is the offline fake (examples/agent/fake_claude.py, docs/fake-agents.md),
logging to ``fake.log`` in the workspace (``FAKE_CLAUDE_LOG``): one line when a run has
its session (``ended: false``), one when it ends. The three-step template
:func:`plan_note_work` is ``claude -> shell -> claude``; the shell step appends a line to
a marks file. Used by tests/agents/test_continuation.py (the local executor) and
tests/dask/test_dask_continuation.py (coordinator crashes and lost workers on Dask).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from helpers.jobs import Coordinator, Workspace, wait_until, workspace
from helpers.processes import job_processes, live_members
from helpers.project import FAKE_CLAUDE
from mapwise.agents.call import DEFAULT_CONTINUE_PROMPT

ITEMS = [{"id": "a"}, {"id": "b"}, {"id": "c"}]
IDS = [item["id"] for item in ITEMS]
COST = re.compile(r"\[fake:cost=([0-9.]+)\]")
DEFAULT_COST = 0.01  # the fake's cost of a run without a cost knob


# -- the fake's log ----------------------------------------------------------------------


def fake_log(path: Path) -> list[dict[str, Any]]:
    """Every line of the fake's invocation log (start lines and end lines)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def starts(path: Path, prefix: str = "", mode: str | None = None) -> list[dict[str, Any]]:
    """Start lines (``ended: false``) whose prompt begins with ``prefix``, of ``mode``."""
    return [
        line
        for line in fake_log(path)
        if not line["ended"]
        and line["prompt"].startswith(prefix)
        and (mode is None or line["mode"] == mode)
    ]


def ends(path: Path) -> list[dict[str, Any]]:
    """End lines (``ended: true``), each naming the pid of the run that ended."""
    return [line for line in fake_log(path) if line["ended"]]


def run_cost(line: dict[str, Any]) -> float:
    """What the fake reported for one run: its prompt's ``[fake:cost=X]``, else 0.01."""
    found = COST.search(line["prompt"])
    return float(found.group(1)) if found else DEFAULT_COST


def log_path(ws: Workspace) -> Path:
    """The fake's invocation log of the workspace (``FAKE_CLAUDE_LOG``)."""
    return ws.path("fake.log")


# -- the agents' processes ---------------------------------------------------------------


def is_fake_agent(pid: int) -> bool:
    """Whether ``pid`` is a live run of the fake agent (not a reused pid)."""
    with contextlib.suppress(OSError):
        return FAKE_CLAUDE.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    return False


def kill_fake_agents(log: Path) -> None:
    """kill -9 the process group of every run of the fake named in ``log`` still alive
    (each run leads a group of its own): what a failed test may have left."""
    for line in fake_log(log):
        if is_fake_agent(line["pid"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(line["pid"], signal.SIGKILL)


def kill_job_processes(job_id: str) -> None:
    """kill -9 every process group a dead coordinator left (its commands, its agents),
    and wait until none of them is alive."""
    groups: set[int] = set()
    for pid in job_processes(job_id):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    wait_until(lambda: not live_members(groups), what="the job's processes to die")
    wait_until(lambda: not job_processes(job_id), what="no process of the job left")


def crash(coordinator: Coordinator, job_id: str) -> None:
    """kill -9 the coordinator's whole process group, then whatever of the job survived
    it (its commands and agents run in sessions of their own, on this machine whether
    the coordinator ran them or a Dask worker here did): a machine that died."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(coordinator.pid, signal.SIGKILL)
    assert coordinator.wait() == -signal.SIGKILL
    kill_job_processes(job_id)


def fake_agent_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """The body of a ``ws`` fixture: a workspace whose agent is the fake, logging to
    ``fake.log``; every process of the fake left by a failed test is killed afterwards."""
    monkeypatch.setenv("MAPWISE_CLAUDE", shlex.join([sys.executable, str(FAKE_CLAUDE)]))
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(tmp_path / "fake.log"))
    try:
        yield from workspace(tmp_path, monkeypatch)
    finally:
        kill_fake_agents(tmp_path / "fake.log")


# -- the database ------------------------------------------------------------------------


def steps_recorded(ws: Workspace, job_id: str, count: int, items: int) -> bool:
    """Whether the first ``count`` template steps are on record as succeeded for
    ``items`` items (the database exists and the progress batches are committed)."""
    if not ws.path(f"state/jobs/{job_id}/state.db").exists():
        return False
    rows = ws.db(job_id).rows(
        "SELECT attempt_id, COUNT(DISTINCT step_index) AS n FROM steps WHERE phase = 'map'"
        " AND on_failure = 0 AND error_kind IS NULL AND step_index < ? GROUP BY attempt_id",
        (count,),
    )
    return sum(1 for row in rows if row["n"] == count) >= items


def item_steps_recorded(ws: Workspace, job_id: str, item_id: str, count: int) -> bool:
    """Whether the first ``count`` template steps of one attempt of ``item_id`` are on
    record as succeeded: the coordinator has the progress its run sent."""
    if not ws.path(f"state/jobs/{job_id}/state.db").exists():
        return False
    rows = ws.db(job_id).rows(
        "SELECT s.attempt_id, COUNT(DISTINCT s.step_index) AS n FROM steps s"
        " JOIN attempts a ON a.id = s.attempt_id JOIN items i ON i.idx = a.item_idx"
        " WHERE i.item_id = ? AND s.phase = 'map' AND s.on_failure = 0"
        " AND s.error_kind IS NULL AND s.step_index < ? GROUP BY s.attempt_id",
        (item_id, count),
    )
    return any(row["n"] == count for row in rows)


# -- the three-step template: plan, note, work -------------------------------------------


def plan_note_work(
    ws: Workspace, *, work: str, items: Sequence[Mapping[str, Any]] = ITEMS, **map_options: Any
) -> Path:
    """``claude (capture plan) -> shell (appends "<id> <plan>" to marks) -> claude``."""
    marks = ws.path("marks")
    marks.touch()
    ws.write_workflow(
        [
            {"claude": "plan ${item.id} [fake:result_text=PLAN-${item.id}]", "capture": "plan"},
            {"shell": 'printf "%s %s\\n" "${item.id}" "${plan}" >> "$MARKS"'},
            {"claude": work},
        ],
        items=items,
        env={"MARKS": str(marks)},
        **{"max_parallel": 3, **map_options},
    )
    return marks


def start_and_reach_work(ws: Workspace, job_id: str, *run_args: str) -> Coordinator:
    """Run the job (``mapwise run ... RUN_ARGS``, e.g. the executor) until every item's
    third step (its agent) is running and the first two are on record."""
    coordinator = ws.start("run", str(ws.workflow_path), "--job-id", job_id, *run_args)
    log = log_path(ws)
    coordinator.wait_for(
        lambda: len(starts(log, "work on")) == len(ITEMS),
        what="the third step running for every item",
    )
    coordinator.wait_for(
        lambda: steps_recorded(ws, job_id, 2, len(ITEMS)),
        what="steps 1 and 2 on record",
    )
    assert coordinator.running(), coordinator.stderr
    return coordinator


# -- what a continued attempt looks like -------------------------------------------------


def check_ran_once_before_work(ws: Workspace, marks: Path, ids: Sequence[str] = IDS) -> None:
    """Steps 1 (a new agent session) and 2 (the marks line) ran once per item."""
    plans = starts(log_path(ws), "plan ")
    assert sorted(line["prompt"].split()[1] for line in plans) == sorted(ids)
    assert {line["mode"] for line in plans} == {"new"}
    assert sorted(marks.read_text().splitlines()) == sorted(f"{i} PLAN-{i}" for i in ids)


def check_work_resumed(
    ws: Workspace, resumed_ids: Sequence[str], ids: Sequence[str] = IDS
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Step 3 started once per item with a new session; for the items ``resumed_ids``
    alone it ran once more, resumed with that session in the same folder with the
    continue prompt, and that run ended with success. Each item's first run of step 3,
    and the resumed run of each resumed item, by item id."""
    log = log_path(ws)
    first = {line["prompt"].split()[2]: line for line in starts(log, "work on")}
    assert sorted(first) == sorted(ids)
    assert {line["mode"] for line in first.values()} == {"new"}
    resumed = starts(log, mode="resume")
    assert len(resumed) == len(resumed_ids), resumed
    by_session = {line["session_id"]: line for line in resumed}
    continued: dict[str, dict[str, Any]] = {}
    for item_id in resumed_ids:
        began = first[item_id]
        again = by_session[began["session_id"]]
        assert again["cwd"] == began["cwd"]
        assert again["prompt"] == DEFAULT_CONTINUE_PROMPT
        assert "--resume" in again["argv"] and "--session-id" not in again["argv"]
        continued[item_id] = again
    ended = {line["pid"]: line for line in ends(log)}
    assert all(ended[line["pid"]]["subtype"] == "success" for line in resumed)
    return first, continued


def check_continued(ws: Workspace, job_id: str, marks: Path) -> dict[str, dict[str, Any]]:
    """After the resume: steps 1 and 2 ran once per item, step 3 was resumed with the
    same session in the same folder with the continue prompt. The resumed run of each
    item, by item id."""
    # Steps 1 and 2 never ran again
    check_ran_once_before_work(ws, marks)
    # And step 3 ran once new, then once resumed, with the same session, in the same
    # folder, and the resumed runs ended with success
    first, continued = check_work_resumed(ws, IDS)
    # And the database says the same: the attempt after the stopped one kept its session
    db = ws.db(job_id)
    for item_id in IDS:
        attempts = db.attempts(item_id)
        assert [a["outcome"] for a in attempts] == ["interrupted", "succeeded"]
        sessions = [json.loads(a["sessions"])["2"] for a in attempts]
        assert sessions == [first[item_id]["session_id"]] * 2
        assert attempts[1]["resume_from"] == 2
        assert json.loads(attempts[1]["carried"]) == {"plan": f"PLAN-{item_id}"}
    return continued


def check_shown_resumed(
    ws: Workspace, job_id: str, continued: dict[str, dict[str, Any]], items: int = len(ITEMS)
) -> None:
    """``dlq show`` names the continued step's session as resumed; ``status`` counts it
    (``items`` items, each with a plan session and a work session)."""
    for item_id, run in continued.items():
        shown = ws.inspect("dlq", "show", job_id, item_id)
        assert shown.returncode == 0, shown.stderr
        line = f"step 3 claude session {run['session_id']} (resumed): success"
        assert line in shown.stdout, shown.stdout
    status = ws.inspect("status", job_id, "--json")
    assert status.returncode == 0, status.stderr
    report = status.json()
    assert report["status"] == "completed"
    # a plan and a work session per item, the continued ones resumed once (same session)
    assert report["cost"]["sessions"] == 2 * items
    assert report["cost"]["resumed_runs"] == len(continued)
    text = ws.inspect("status", job_id)
    assert f"in {2 * items} sessions ({len(continued)} resumed)" in text.stdout, text.stdout
