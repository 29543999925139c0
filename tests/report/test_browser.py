"""Reports opened in a real headless Chromium (selenium, Debian's chromium and chromedriver).

Each case runs a real job through the command line, writes its report with
``mapwise report`` and opens the file in the browser as a reader would. The page must
draw without a console error, show something, represent every attempt of the job's
database on its timeline (the sum of the bars' ``data-count``, read from the page as the
browser parsed it) and show in its header the numbers of ``mapwise status --json``. A
screenshot of each is saved under the test's temporary folder (its path is printed), to
look at; never in the repository.

Without chromium, chromedriver or selenium these tests skip, unless
``MAPWISE_REQUIRE_BROWSER=1`` (as in ``.ci/run``): then they fail.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mapwise
from helpers.jobs import Coordinator, Workspace, block_while, item_command, wait_until, workspace
from helpers.project import FAKE_CLAUDE
from mapwise.report import page
from mapwise.report.model import AttemptSpan, ReportData, RunSpan

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals, POSIX groups")

REQUIRE_ENV = "MAPWISE_REQUIRE_BROWSER"
WINDOW = (1280, 1600)
FAIL_BAD = '[ "$MAPWISE_ITEM_ID" != bad ] || { echo "bad item" >&2; exit 3; }'
BLOCK_SLOW = '[ "$MAPWISE_ITEM_ID" != slow ] || {{ {} ; }}'.format(block_while("SLOW"))
BIG_JOB_SECONDS = 600.0  # generous bound on the 10,000-item job: a hang fails, speed never


# -- the browser -------------------------------------------------------------------------


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing() -> str | None:
    """What is missing to drive a browser, if anything."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if _chromium() is None:
        return "no chromium on PATH (apt-get install chromium)"
    if shutil.which("chromedriver") is None:
        return "no chromedriver on PATH (apt-get install chromium-driver)"
    return None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module, its console messages kept; or, when it
    cannot start, what is missing (each test then skips or fails, see ``use``)."""
    missing = _missing()
    if missing is not None:
        yield missing
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(_chromium())
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=str(shutil.which("chromedriver")))
    )
    try:
        yield driver
    finally:
        driver.quit()


def use(chromium: Any) -> Any:
    """The browser; without one the test skips, or fails under MAPWISE_REQUIRE_BROWSER=1
    (in the test itself, so that it counts as a failure, not a setup error)."""
    if isinstance(chromium, str):
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{chromium}, and {REQUIRE_ENV}=1 requires the browser tests")
        pytest.skip(chromium)
    return chromium


def open_report(browser: Any, path: Path) -> list[dict[str, Any]]:
    """Open the report file; the console messages it gave."""
    browser.get_log("browser")  # drop what earlier pages said
    browser.get(path.resolve().as_uri())
    wait_until(
        lambda: browser.execute_script("return document.readyState") == "complete",
        what="the page to load",
    )
    messages: list[dict[str, Any]] = browser.get_log("browser")
    return messages


def screenshot(browser: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    assert browser.save_screenshot(str(path)), path
    print(f"screenshot: {path}")
    return path


ATTEMPTS_DRAWN = """
return [...document.querySelectorAll('svg rect.bar')]
    .reduce((sum, bar) => sum + Number(bar.dataset.count), 0);
"""
HEADER = """
return Object.fromEntries([...document.querySelectorAll('dd[id]')]
    .map(dd => [dd.id, dd.dataset.value]));
"""
DRAWN = """
const box = e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
const timeline = document.querySelector('section#timeline svg.chart');
return {
    text: document.body.innerText.trim().length,
    timeline: timeline ? box(timeline) : null,
    bars: [...document.querySelectorAll('svg rect.bar')].filter(b => box(b)[0] > 0).length,
    gathered: [...document.querySelectorAll('svg rect.bar')]
        .filter(b => Number(b.dataset.count) > 1).length,
};
"""


# -- jobs --------------------------------------------------------------------------------


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("MAPWISE_CLAUDE", shlex.join([sys.executable, str(FAKE_CLAUDE)]))
    yield from workspace(tmp_path, monkeypatch)


def statuses(ws: Workspace, job: str) -> dict[str, str]:
    path = ws.state_dir / "jobs" / job / "state.db"
    if not path.is_file():
        return {}
    try:
        return ws.db(job).statuses()
    except sqlite3.Error:
        return {}


def blocked_job(ws: Workspace, job: str, items: list[str]) -> Coordinator:
    """Start a job whose item ``slow`` blocks while the ``slow`` flag exists (``bad``
    fails twice into the DLQ); wait until every other item is done and ``slow`` runs."""
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
    expected = dict.fromkeys(items, "succeeded") | {"slow": "running"}
    if "bad" in items:
        expected["bad"] = "dlq"
    coordinator.wait_for(
        lambda: statuses(ws, job) == expected,
        what=f"items {expected}",
    )
    return coordinator


def write_report(ws: Workspace, job: str) -> Path:
    """``mapwise report JOB -o JOB.html`` in a real subprocess."""
    target = ws.path(f"{job}.html")
    command = ["report", job, "-o", str(target), "--state-dir", str(ws.state_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "mapwise", *command],
        cwd=ws.root,
        env=dict(os.environ),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return target


def check_page(browser: Any, ws: Workspace, job: str, tmp_path: Path, name: str) -> dict[str, Any]:
    """Write and open the job's report; check it against the job's database and
    ``status --json`` as they are now; save a screenshot. What the page drew."""
    # When the report is written and opened
    status = ws.inspect("status", job, "--json").json()
    attempts = len(ws.db(job).attempts())
    messages = open_report(browser, write_report(ws, job))
    screenshot(browser, tmp_path, name)

    # Then the browser reported no error
    severe = [m for m in messages if m["level"] == "SEVERE"]
    assert severe == [], severe
    # And the page is not blank: text, a timeline of visible bars
    drawn: dict[str, Any] = browser.execute_script(DRAWN)
    assert drawn["text"] > 200, drawn
    assert drawn["timeline"] is not None and min(drawn["timeline"]) > 0, drawn
    assert drawn["bars"] > 0, drawn
    # And the bars stand for every attempt of the job
    assert browser.execute_script(ATTEMPTS_DRAWN) == attempts
    # And the header's numbers are those of `status --json`
    header = browser.execute_script(HEADER)
    progress = status["progress"]
    assert int(header["succeeded"]) == progress["completed_items"]
    assert int(header["dlq"]) == progress["failed_items"]
    assert int(header["pending"]) == progress["pending_items"]
    assert int(header["total"]) == progress["total_items"]
    assert header["status"] == status["status"]
    if status["cost"]["agent_runs"]:
        assert float(header["cost"]) == pytest.approx(status["cost"]["usd"], abs=1e-6)
    else:
        assert "cost" not in header
    return drawn


# -- the cases ---------------------------------------------------------------------------


def test_a_small_completed_job_with_agent_steps(
    chromium: Any, ws: Workspace, tmp_path: Path
) -> None:
    browser = use(chromium)
    # Given a completed job of eight items: a shell step and a fake claude run each
    job = "small"
    ws.write_workflow(
        ["sleep 0.05", {"claude": "work on ${item.id} [fake:cost=0.25]"}],
        items=[{"id": f"item-{n}"} for n in range(8)],
        max_parallel=3,
    )
    assert ws.finish(ws.start_run(job)).returncode == 0

    # When its report is opened, Then it draws it as `status --json` counts it
    check_page(browser, ws, job, tmp_path, "small")
    # And its cost is drawn over time
    assert browser.execute_script(
        "return document.querySelectorAll('section#cost polyline.cost').length"
    )


def test_a_job_with_dlq_items_and_a_resume(chromium: Any, ws: Workspace, tmp_path: Path) -> None:
    browser = use(chromium)
    # Given a job whose item `bad` went to the DLQ and whose item `slow` was running
    # when SIGINT stopped the job, resumed to its end
    job = "dlq-resume"
    coordinator = blocked_job(ws, job, ["a", "bad", "slow", "b", "c"])
    coordinator.send(signal.SIGINT)
    assert coordinator.wait() == 130, coordinator.stderr
    ws.flag("slow").unlink()
    assert ws.resume(job).returncode == 1  # completed, with an item in the DLQ

    # When its report is opened, Then it draws it as `status --json` counts it
    check_page(browser, ws, job, tmp_path, "dlq-resume")
    # And the failed and interrupted attempts are on the timeline, both runs marked
    outcomes = browser.execute_script(
        "return [...document.querySelectorAll('svg rect.bar')].map(b => b.dataset.outcome)"
    )
    assert {"failed", "interrupted", "succeeded"} <= set(outcomes)
    assert browser.execute_script("return document.querySelectorAll('g.run').length") == 2
    assert "mapwise dlq retry dlq-resume" in browser.execute_script(
        "return document.querySelector('p#resume code').textContent"
    )


def test_a_running_job(chromium: Any, ws: Workspace, tmp_path: Path) -> None:
    browser = use(chromium)
    # Given a job whose item `slow` runs, the others done
    job = "running"
    coordinator = blocked_job(ws, job, ["a", "b", "slow", "c"])

    # When its report is opened while it runs, Then it draws it as `status --json` counts it
    check_page(browser, ws, job, tmp_path, "running")
    header = browser.execute_script(HEADER)
    assert header["status"] == "running"
    outcomes = browser.execute_script(
        "return [...document.querySelectorAll('svg rect.bar')].map(b => b.dataset.outcome)"
    )
    assert outcomes.count("running") == 1

    # And the job finishes afterwards
    ws.flag("slow").unlink()
    assert ws.finish(coordinator).returncode == 0


@pytest.mark.slow
def test_a_job_of_ten_thousand_items_gathers_its_bars(
    chromium: Any, ws: Workspace, tmp_path: Path
) -> None:
    browser = use(chromium)
    # Given a completed job of 10,000 quick items on four slots
    job = "big"
    ws.write_workflow(["true"], items=[{"id": f"i{n:05d}"} for n in range(10_000)], max_parallel=4)
    coordinator = ws.start_run(job)
    assert coordinator.wait(timeout=BIG_JOB_SECONDS) == 0, coordinator.stderr

    # When its report is opened, Then it draws it as `status --json` counts it
    drawn = check_page(browser, ws, job, tmp_path, "big")
    # And attempts thinner than a pixel are gathered: far fewer bars than attempts
    assert drawn["gathered"] > 0, drawn
    bars = browser.execute_script("return document.querySelectorAll('svg rect.bar').length")
    assert bars < 10_000 / 2
    # And the items table is capped with a count of the rest
    left_out = browser.execute_script(
        "return Number(document.querySelector('p#left-out').dataset.value)"
    )
    rows = browser.execute_script(
        "return document.querySelectorAll('table#item-table tr').length - 1"
    )
    assert rows + left_out == 10_000


# -- colour schemes ----------------------------------------------------------------------

COLOURS = """
const rgb = e => getComputedStyle(e);
const muted = document.querySelector('.muted');
const axis = document.querySelector('svg.chart text.axis');
const label = document.querySelector('svg.chart text.label');
return {
    background: rgb(document.body).backgroundColor,
    text: rgb(document.body).color,
    muted: rgb(muted).color,
    axis: rgb(axis).fill,
    label: rgb(label).fill,
};
"""


def _luminance(css: str) -> float:
    """Relative luminance (WCAG) of ``rgb(r, g, b)``."""
    inside = css[css.index("(") + 1 : css.index(")")]
    channels = [float(part) / 255 for part in inside.split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(one: str, other: str) -> float:
    high, low = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_report_follows_a_dark_colour_scheme_and_stays_readable(
    chromium: Any, ws: Workspace, tmp_path: Path
) -> None:
    browser = use(chromium)
    # Given the report of a job with an item in the DLQ
    job = "schemes"
    ws.write_workflow(
        [f"sleep 0.05; {FAIL_BAD}"],
        items=[{"id": name} for name in ("a", "bad", "b")],
        max_parallel=2,
    )
    assert ws.finish(ws.start_run(job)).returncode == 1
    target = write_report(ws, job)

    # When it is opened in the default (light) scheme
    assert [m for m in open_report(browser, target) if m["level"] == "SEVERE"] == []
    light = browser.execute_script(COLOURS)
    screenshot(browser, tmp_path, "light")

    # Then the page is light, its text dark and readable
    assert _luminance(light["background"]) > 0.8, light
    assert _contrast(light["text"], light["background"]) >= 7, light

    # When the reader's system prefers a dark scheme
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    try:
        messages = open_report(browser, target)
        dark = browser.execute_script(COLOURS)
        screenshot(browser, tmp_path, "dark")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    # Then the page is dark, with no error
    assert [m for m in messages if m["level"] == "SEVERE"] == []
    assert _luminance(dark["background"]) < 0.05, dark
    # And its text, muted text and chart labels stay readable on it (WCAG AA: 4.5)
    for part in ("text", "muted", "axis", "label"):
        assert _contrast(dark[part], dark["background"]) >= 4.5, (part, dark)


# -- labels that do not fit ----------------------------------------------------------------

TEXT_OUTSIDE = """
const svg = document.querySelector('section#timeline svg.chart');
const box = svg.getBoundingClientRect();
return [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBoundingClientRect()])
    .filter(([, r]) => r.left < box.left - 0.5 || r.right > box.right + 0.5)
    .map(([text, r]) => `${text}: ${r.left}-${r.right} outside ${box.left}-${box.right}`);
"""


def test_the_label_of_a_run_starting_near_the_end_of_the_timeline_is_not_clipped(
    chromium: Any, ws: Workspace, tmp_path: Path
) -> None:
    browser = use(chromium)
    # Given a real job's header, and a timeline whose resume starts 99.5% of the way:
    # a first run of 60 s, then a resume of 1 s, 200 s after the start
    ws.write_workflow([": only step"], items=[{"id": "a"}])
    assert ws.finish(ws.start_run("late")).returncode == 0
    status = mapwise.job_status("late", ws.state_dir)
    data = ReportData(
        status=status,
        live=False,
        now=1200.0,
        attempts=(
            AttemptSpan(1, "a", 1, 1, "vm", 0, 1000.0, 1050.0, "interrupted", None, None),
            AttemptSpan(2, "a", 2, 2, "vm", 0, 1199.0, 1200.0, "succeeded", None, None),
        ),
        runs=(RunSpan(1, 1000.0, 1060.0, "interrupted"), RunSpan(2, 1199.0, 1200.0, "completed")),
        item_durations=(1.0,),
        steps=(),
        cost_points=(),
        costliest=(),
        items=(),
        items_left_out=0,
        resume_command=None,
    )
    target = tmp_path / "late.html"
    target.write_text(page.render(data, "test")[0], encoding="utf-8")

    # When it is opened
    assert [m for m in open_report(browser, target) if m["level"] == "SEVERE"] == []
    screenshot(browser, tmp_path, "late")

    # Then every label of the timeline lies within it
    assert browser.execute_script(TEXT_OUTSIDE) == []
