"""``mapwise report``: one self-contained HTML file of a job, in any state (no browser).

Jobs run for real through the command line; the report is written by ``mapwise report``
in a subprocess, parsed with the standard library's HTML parser, and checked against
the job's database and ``mapwise status --json``. The page carries its numbers in
attributes for this: the header's ``dd`` elements have ``data-value``, the timeline's
bars (``rect.bar`` in ``g#bars``) ``data-count`` and ``data-outcome``.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import mapwise
from helpers.jobs import Workspace, block_while, item_command, wait_until, workspace
from helpers.project import Project, mapreduce
from mapwise.report import svg
from mapwise.report.layout import Timeline, histogram
from mapwise.store.reportrows import ITEMS_SHOWN

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals, POSIX groups")

FAIL_BAD = '[ "$MAPWISE_ITEM_ID" != bad ] || { echo "bad item" >&2; exit 3; }'
BLOCK_SLOW = '[ "$MAPWISE_ITEM_ID" != slow ] || {{ {} ; }}'.format(block_while("SLOW"))


# -- reading the page --------------------------------------------------------------------

VOID = {"meta", "link", "br", "hr", "img", "input", "source", "col", "area", "base", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.walk()

    def all(self, tag: str, **attrs: str) -> list[Node]:
        """Descendants of ``tag`` whose attributes have these values (``class_`` for class)."""
        wanted = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [
            n
            for n in self.walk()
            if n.tag == tag and all(n.attrs.get(k) == v for k, v in wanted.items())
        ]

    def one(self, tag: str, **attrs: str) -> Node:
        found = self.all(tag, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} {attrs}>"
        return found[0]

    def has(self, tag: str, **attrs: str) -> bool:
        return bool(self.all(tag, **attrs))


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.at = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.at.children.append(Node(tag, {k: v or "" for k, v in attrs}, self.at))

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"stray </{tag}>"
        self.at = node.parent

    def handle_data(self, data: str) -> None:
        self.at.children.append(data)


@dataclass
class Page:
    """A written report: its raw text and its parsed tree."""

    path: Path
    raw: str
    doc: Node

    @classmethod
    def read(cls, path: Path) -> Page:
        raw = path.read_text(encoding="utf-8")
        tree = _Tree()
        tree.feed(raw)
        tree.close()
        assert tree.at is tree.root, f"<{tree.at.tag}> left open"
        return cls(path, raw, tree.root)

    def header(self) -> dict[str, str]:
        """The header's values: ``dd`` id -> ``data-value``."""
        return {dd.attrs["id"]: dd.attrs["data-value"] for dd in self.doc.all("dd")}

    def bars(self) -> list[Node]:
        return self.doc.one("g", id="bars").all("rect", class_="bar")

    def attempts_drawn(self) -> int:
        return sum(int(bar.attrs["data-count"]) for bar in self.bars())

    def run_marks(self) -> list[Node]:
        """The shaded rectangle of each run on the timeline."""
        return [g.all("rect")[0] for g in self.doc.all("g", class_="run")]

    def item_rows(self) -> list[dict[str, str]]:
        """The items table's rows: column heading -> cell text."""
        table = self.doc.one("table", id="item-table")
        rows = table.all("tr")
        heads = [th.text() for th in rows[0].all("th")]
        cells = [[td.text() for td in tr.all("td")] for tr in rows[1:]]
        return [dict(zip(heads, row, strict=True)) for row in cells]

    def resume(self) -> str | None:
        found = self.doc.all("p", id="resume")
        return found[0].one("code").text() if found else None


def assert_self_contained(raw: str) -> None:
    """Nothing in the page refers to anything outside it."""
    lowered = raw.lower()
    for needle in ("http:", "https:", "//", "<script", "@import", "<link", "<img", "<iframe"):
        assert needle not in lowered, f"{needle!r} in the report"
    assert not re.search(r"\s(src|href|xlink:href)\s*=", lowered), "a src/href attribute"
    for found in re.finditer(r"url\(", lowered):
        assert lowered.startswith("url(#", found.start()), lowered[found.start() : found.end() + 30]


# -- running jobs and writing reports ----------------------------------------------------


def report_cli(root: Path, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``mapwise report ARGS --state-dir STATE`` in a real subprocess, run in ``root``."""
    return subprocess.run(
        [sys.executable, "-m", "mapwise", "report", *args, "--state-dir", str(state_dir)],
        cwd=root,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def write_report(root: Path, state_dir: Path, job: str, name: str = "report.html") -> Page:
    """Write the job's report with the command line and read it back."""
    done = report_cli(root, state_dir, job, "-o", name)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    page = Page.read(root / name)
    assert_self_contained(page.raw)
    return page


def job_status(inspect: Callable[..., Any], job: str) -> dict[str, Any]:
    shown = inspect("status", job, "--json")
    assert shown.returncode == 0, shown.stderr
    status: dict[str, Any] = shown.json()
    return status


def assert_header_matches_status(page: Page, status: dict[str, Any]) -> None:
    """The header's numbers are those of ``mapwise status --json``."""
    header = page.header()
    progress = status["progress"]
    assert int(header["succeeded"]) == progress["completed_items"]
    assert int(header["dlq"]) == progress["failed_items"]
    assert int(header["pending"]) == progress["pending_items"]
    assert int(header["total"]) == progress["total_items"]
    assert header["status"] == status["status"]
    assert header["phase"] == status["phase"]
    assert int(header["runs"]) == len(status["runs"])
    if "cost" in header:
        assert float(header["cost"]) == pytest.approx(status["cost"]["usd"], abs=1e-6)


def statuses(db_path: Path) -> dict[str, str]:
    """Item id -> status, or none while the job's database is not there yet."""
    if not db_path.is_file():
        return {}
    try:
        conn = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return dict(conn.execute("SELECT item_id, status FROM items").fetchall())
        finally:
            conn.close()
    except sqlite3.Error:
        return {}


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    yield from workspace(tmp_path, monkeypatch)


def blocked_job(ws: Workspace, job: str, items: list[str]) -> Any:
    """Start a job whose item ``slow`` blocks while the ``slow`` flag exists, and wait
    until every other item is done and ``slow`` runs. Returns the coordinator."""
    ws.flag("slow").touch()
    ws.write_workflow(
        # a first step of 0.1 s: each attempt is wide enough to be a bar of its own
        ["sleep 0.1", item_command(f"{FAIL_BAD}; {BLOCK_SLOW}")],
        items=[{"id": name} for name in items],
        env={"SLOW": str(ws.flag("slow"))},
        max_parallel=2,
        retry={"max_attempts": 2, "initial_delay": 0},
    )
    coordinator = ws.start_run(job)
    expected = {name: "succeeded" for name in items} | {"slow": "running"}
    if "bad" in items:
        expected["bad"] = "dlq"
    db_path = ws.state_dir / "jobs" / job / "state.db"
    coordinator.wait_for(
        lambda: statuses(db_path) == expected,
        what=f"items {expected}",
    )
    return coordinator


# -- a completed job ---------------------------------------------------------------------


def test_the_report_of_a_completed_job_shows_its_numbers_bars_and_items(
    project: Project,
) -> None:
    # Given a job of six items and two template steps that completed
    project.workflow(
        mapreduce(["sleep 0.05", "echo ${item.id}"], id="${item.id}", max_parallel=2),
        items=[{"id": f"it{n}"} for n in range(6)],
    )
    run = project.run_cli()
    assert run.returncode == 0, run.stderr
    job = run.job_id

    # When its report is written
    page = write_report(project.root, project.state_dir, job)

    # Then the header says what `status --json` says
    status = job_status(project.inspect, job)
    assert_header_matches_status(page, status)
    assert page.header()["status"] == "completed"
    assert page.header()["total"] == "6"
    # And the workflow and job are named
    assert job in page.doc.one("head").one("title").text()
    # And the timeline draws each attempt as a succeeded bar, each with its tooltip
    attempts = project.db(job).attempts()
    assert len(attempts) == 6
    section = page.doc.one("section", id="timeline")
    assert int(section.attrs["data-attempts"]) == len(attempts)
    assert page.attempts_drawn() == len(attempts)
    assert {bar.attrs["data-outcome"] for bar in page.bars()} == {"succeeded"}
    tips = [bar.one("title").text() for bar in page.bars()]
    for n in range(6):
        assert any(tip.startswith(f"it{n} · attempt 1, run 1") for tip in tips), tips
    # And a row per slot, one run marked
    labels = [t.text() for t in section.all("text", class_="label")]
    assert labels == ["slot 0", "slot 1"]
    assert len(page.run_marks()) == 1
    # And the durations and each template step's statistics
    assert page.doc.has("section", id="durations")
    steps = page.doc.one("table", id="steps")
    assert len([tr for tr in steps.all("tr") if tr.has("td")]) == 2
    # And every item in the items table, no cost, nothing left out, nothing to resume
    rows = page.item_rows()
    assert sorted(row["item"] for row in rows) == [f"it{n}" for n in range(6)]
    assert {row["status"] for row in rows} == {"succeeded"}
    assert "cost" not in rows[0]  # no cost column for a job of shell steps
    assert not page.doc.has("p", id="left-out")
    assert "cost" not in page.header()
    assert not page.doc.has("section", id="cost")
    assert page.resume() is None


def test_the_report_goes_to_job_id_html_in_the_current_folder_by_default(
    project: Project,
) -> None:
    # Given a completed job
    project.workflow(mapreduce(["true"], max_parallel=1), items=["x", "y"])
    run = project.run_cli()
    assert run.returncode == 0, run.stderr
    job = run.job_id

    # When its report is written without -o, from the project folder
    done = report_cli(project.root, project.state_dir, job)

    # Then it is <job_id>.html there, and the command says where
    assert done.returncode == 0, done.stderr
    target = project.root / f"{job}.html"
    assert target.is_file()
    assert f"wrote {job}.html" in done.stderr
    assert done.stdout == ""
    assert_self_contained(target.read_text(encoding="utf-8"))
    # And the library does the same, in the folder it runs in
    target.unlink()
    written = mapwise.write_report(job, state_dir=project.state_dir)
    assert written.path == Path(f"{job}.html")
    assert target.is_file()
    assert written.bytes == target.stat().st_size
    assert (written.attempts, written.items) == (2, 2)
    assert written.bars == len(Page.read(target).bars())


# -- DLQ items and a resume --------------------------------------------------------------


def test_the_report_of_a_job_with_dlq_items_and_a_resume(ws: Workspace) -> None:
    # Given a job whose item `bad` failed twice into the DLQ and whose item `slow` was
    # running when SIGINT stopped the job, resumed to its end
    job = "dlq-resume"
    coordinator = blocked_job(ws, job, ["a", "bad", "slow", "b"])
    coordinator.send(signal.SIGINT)
    assert coordinator.wait() == 130, coordinator.stderr
    ws.flag("slow").unlink()
    assert ws.resume(job).returncode == 1  # completed with an item in the DLQ

    # When its report is written
    page = write_report(ws.root, ws.state_dir, job)

    # Then the header says what `status --json` says: two runs, one item in the DLQ
    status = job_status(ws.inspect, job)
    assert_header_matches_status(page, status)
    assert (page.header()["dlq"], page.header()["runs"]) == ("1", "2")
    # And, the job being completed with an item in the DLQ, the exact command that
    # retries it (a plain resume would have nothing to run)
    assert page.resume() == f"mapwise dlq retry {job} --state-dir {ws.state_dir}"
    # And the timeline draws every attempt with its outcome: the failed and the
    # interrupted ones too
    attempts = ws.db(job).attempts()
    assert page.attempts_drawn() == len(attempts)
    drawn = Counter[str]()
    for bar in page.bars():
        drawn[bar.attrs["data-outcome"]] += int(bar.attrs["data-count"])
    assert drawn == Counter(a["outcome"] for a in attempts)
    assert drawn["failed"] == 2 and drawn["interrupted"] == 1
    failed_tips = [
        b.one("title").text() for b in page.bars() if b.attrs["data-outcome"] == "failed"
    ]
    assert any("bad item" in tip for tip in failed_tips), failed_tips
    # And both runs are marked, the first a start, the second a resume
    marks = [m.one("title").text() for m in page.run_marks()]
    assert marks == ["run 1 (start), interrupted", "run 2 (resume), completed"]
    # And the DLQ item comes first in the items table with its last error
    rows = page.item_rows()
    assert (rows[0]["item"], rows[0]["status"], rows[0]["attempts"]) == ("bad", "dlq", "2")
    assert "bad item" in rows[0]["last error"]
    assert sorted(row["item"] for row in rows) == ["a", "b", "bad", "slow"]


# -- a running job -----------------------------------------------------------------------


def test_a_report_written_while_the_job_runs_shows_it_running_and_leaves_it_alone(
    ws: Workspace,
) -> None:
    # Given a job whose item `slow` runs, the others done
    job = "live"
    coordinator = blocked_job(ws, job, ["a", "slow", "b"])

    # When its report is written while the job runs
    page = write_report(ws.root, ws.state_dir, job, "live.html")

    # Then it shows the job running, as `status --json` does
    status = job_status(ws.inspect, job)
    assert status["status"] == "running"
    assert_header_matches_status(page, status)
    assert page.header()["status"] == "running"
    # And the running attempt as a running bar, every attempt drawn
    attempts = ws.db(job).attempts()
    assert page.attempts_drawn() == len(attempts) == 3
    running = [b for b in page.bars() if b.attrs["data-outcome"] == "running"]
    assert len(running) == 1
    assert running[0].one("title").text().startswith("slow · attempt 1, run 1")
    # And nothing to resume: the job is not stopped
    assert page.resume() is None

    # When the blocked item may end
    ws.flag("slow").unlink()

    # Then the job finishes as if no report had been written
    done = ws.finish(coordinator)
    assert done.returncode == 0, done.stderr
    assert set(ws.db(job).statuses().values()) == {"succeeded"}
    # And a report written now shows it completed, with no running bar
    after = write_report(ws.root, ws.state_dir, job, "after.html")
    assert after.header()["status"] == "completed"
    assert {b.attrs["data-outcome"] for b in after.bars()} == {"succeeded"}


# -- a job left by kill -9 ---------------------------------------------------------------


def test_a_job_left_by_kill_9_shows_its_running_attempt_interrupted_at_the_run_end(
    ws: Workspace,
) -> None:
    # Given a job whose item `slow` was running when its coordinator got `kill -9`
    job = "killed"
    coordinator = blocked_job(ws, job, ["a", "slow", "b"])
    coordinator.kill9()
    ws.flag("slow").unlink()  # the orphaned command may end
    wait_until(lambda: not ws.live_commands(), what="the orphaned command to end")

    # When its report is written
    page = write_report(ws.root, ws.state_dir, job)

    # Then the job is interrupted and resumable, as `status --json` says
    status = job_status(ws.inspect, job)
    assert status["status"] == "interrupted"
    assert_header_matches_status(page, status)
    assert page.resume() == f"mapwise resume {job} --state-dir {ws.state_dir}"
    # And the attempt left running is drawn interrupted, none running
    assert page.attempts_drawn() == len(ws.db(job).attempts()) == 3
    outcomes = Counter(b.attrs["data-outcome"] for b in page.bars())
    assert outcomes == {"succeeded": 2, "interrupted": 1}
    # And its bar ends where its run ends
    (bar,) = [b for b in page.bars() if b.attrs["data-outcome"] == "interrupted"]
    (mark,) = page.run_marks()
    bar_end = float(bar.attrs["x"]) + float(bar.attrs["width"])
    run_end = float(mark.attrs["x"]) + float(mark.attrs["width"])
    assert bar_end == pytest.approx(run_end, abs=0.02)
    assert mark.one("title").text() == "run 1 (start), interrupted"


# -- refusals ----------------------------------------------------------------------------


def test_an_unknown_job_is_refused_with_exit_2_and_no_traceback(project: Project) -> None:
    # Given a state directory with a job, When the report of another job is asked for
    project.workflow(mapreduce(["true"]), items=["x"])
    assert project.run_cli().returncode == 0
    done = report_cli(project.root, project.state_dir, "nope")

    # Then it is refused with exit 2, naming the job, and writes nothing
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "no job 'nope'" in done.stderr
    assert not (project.root / "nope.html").exists()


def test_a_report_into_a_missing_folder_is_refused_clearly(project: Project) -> None:
    # Given a completed job
    project.workflow(mapreduce(["true"]), items=["x"])
    run = project.run_cli()
    assert run.returncode == 0, run.stderr

    # When its report is asked for in a folder that does not exist
    done = report_cli(project.root, project.state_dir, run.job_id, "-o", "missing/r.html")

    # Then it is refused with exit 2 and a message naming the file, and nothing is made
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "cannot write missing/r.html" in done.stderr
    assert not (project.root / "missing").exists()


# -- big jobs: the items table is capped --------------------------------------------------


def test_a_big_job_shows_every_dlq_item_and_caps_the_others_with_a_count(
    project: Project,
) -> None:
    # Given a job of 620 items, three of which fail (one past the cap of the table)
    failing = {7, 333, 611}
    items = [{"id": f"i{n:03d}", "code": 3 if n in failing else 0} for n in range(620)]
    project.workflow(mapreduce(["exit ${item.code}"], id="${item.id}", max_parallel=8), items=items)
    run = project.run_cli()
    assert run.returncode == 1, run.stderr
    job = run.job_id

    # When its report is written
    page = write_report(project.root, project.state_dir, job)

    # Then every DLQ item comes first, then the first ITEMS_SHOWN others in list order
    rows = page.item_rows()
    dlq = [f"i{n:03d}" for n in sorted(failing)]
    assert [row["item"] for row in rows[:3]] == dlq
    assert {row["status"] for row in rows[:3]} == {"dlq"}
    others = [item["id"] for item in items if item["id"] not in dlq]
    assert [row["item"] for row in rows[3:]] == others[:ITEMS_SHOWN]
    # And a line says how many are left out
    left_out = page.doc.one("p", id="left-out")
    assert int(left_out.attrs["data-value"]) == 620 - 3 - ITEMS_SHOWN
    assert f"{620 - 3 - ITEMS_SHOWN} more items" in left_out.text()
    # And the header and the timeline still count everything
    assert_header_matches_status(page, job_status(project.inspect, job))
    assert page.attempts_drawn() == 620


# -- cost --------------------------------------------------------------------------------


def test_a_job_with_agent_steps_shows_its_cost_as_status_does(project: Project) -> None:
    # Given a job whose items each run the fake claude once, at different costs
    costs = {"cheap": 0.25, "mid": 0.5, "dear": 1.25}
    project.workflow(
        mapreduce(
            [{"claude": "work on ${item.id} [fake:cost=${item.cost}]"}],
            id="${item.id}",
            max_parallel=3,
        ),
        items=[{"id": item, "cost": cost} for item, cost in costs.items()],
    )
    run = project.run_cli()
    assert run.returncode == 0, run.stderr
    job = run.job_id

    # When its report is written
    page = write_report(project.root, project.state_dir, job)

    # Then its cost is `status --json`'s, with tokens and agent runs beside it
    status = job_status(project.inspect, job)
    assert status["cost"]["usd"] == pytest.approx(2.0)
    header = page.header()
    assert float(header["cost"]) == pytest.approx(status["cost"]["usd"], abs=1e-6)
    assert int(header["sessions"]) == status["cost"]["agent_runs"] == 3
    assert "tokens" in header
    assert_header_matches_status(page, status)
    # And a cost section: the spend over time and the costliest items, most first
    section = page.doc.one("section", id="cost")
    assert section.has("polyline", class_="cost")
    costliest = section.one("table", id="costliest")
    rows = [[td.text() for td in tr.all("td")] for tr in costliest.all("tr") if tr.has("td")]
    assert rows == [["dear", "$1.2500"], ["mid", "$0.5000"], ["cheap", "$0.2500"]]
    # And each bar's tooltip and each item's row give its cost
    for bar in page.bars():
        tip = bar.one("title").text()
        item = tip.split(" · ")[0]
        assert f"${costs[item]:.4f}" in tip, tip
    assert {row["item"]: row["cost"] for row in page.item_rows()} == {
        item: f"${cost:.4f}" for item, cost in costs.items()
    }


def test_every_report_is_one_file_with_no_reference_outside_it(project: Project) -> None:
    # Given a job with an agent step, a failing item and a retry
    project.workflow(
        mapreduce(
            [{"claude": "work on ${item.id} [fake:cost=0.25]"}, "exit ${item.code}"],
            id="${item.id}",
            retry={"max_attempts": 2, "initial_delay": 0},
        ),
        items=[{"id": "ok", "code": 0}, {"id": "ko", "code": 4}],
    )
    run = project.run_cli()
    assert run.returncode == 1, run.stderr

    # When its report is written
    path = project.root / "all.html"
    done = report_cli(project.root, project.state_dir, run.job_id, "-o", str(path))
    assert done.returncode == 0, done.stderr

    # Then the page has every section and refers to nothing outside itself: no address,
    # no `//`, no src or href, no script, no import, no url() but to its own patterns
    page = Page.read(path)
    for section in ("timeline", "durations", "cost", "items"):
        assert page.doc.has("section", id=section), section
    assert_self_contained(page.raw)
    assert page.raw.count("url(#p-") >= len(page.bars())
    # And it declares its encoding and is a whole document
    assert page.raw.startswith("<!doctype html>")
    assert page.doc.one("meta", charset="utf-8")


# -- drawing: what a reader sees on the axes ----------------------------------------------

AXIS_TEXT = re.compile(r'<text class="axis"[^>]*>([^<]*)</text>')


def test_the_ticks_of_a_short_timeline_have_distinct_labels() -> None:
    # Given a timeline of 0.12 s (a small job's whole run)
    shape = timeline_layout(seconds=0.12)

    # When it is drawn
    labels = AXIS_TEXT.findall(svg.timeline(shape))

    # Then its six tick labels tell six moments apart
    assert len(labels) == 6
    assert len(set(labels)) == 6, labels


def test_the_histogram_axis_of_close_durations_has_distinct_labels() -> None:
    # Given item durations between 53 and 55 ms
    bins, log = histogram([0.053, 0.0535, 0.054, 0.055])

    # When they are drawn
    labels = AXIS_TEXT.findall(svg.histogram(bins, log, 640))[1:]  # after the count

    # Then the axis labels tell the bins apart
    assert len(set(labels)) == len(labels), labels


def timeline_layout(seconds: float) -> Timeline:
    return Timeline(
        rows=("slot 0",),
        bars=(),
        runs=(),
        start=1000.0,
        seconds=seconds,
        width=1000.0,
        attempts=0,
    )
