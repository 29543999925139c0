"""A corpus of prodigy-shaped workflows, written for mapwise (issue 13, "Tests").

Each file of ``tests/fixtures/prodigy_corpus`` exercises a group of the constructs of the
compatibility table in docs/workflow.md ("prodigy compatibility", "Every key of prodigy's
format"). Every file is (1) validated through the real command line, which must accept
it with exactly the warnings listed here (key and line), and (2) run end to end in a
copy, with the fake agent, and its outcome checked: which items succeed or reach the DLQ,
and a few files or values that show the construct did its work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers.project import CliRun, Project

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "prodigy_corpus"
WARNING = re.compile(r"^warning: (?P<file>[^:]+):(?P<line>\d+): (?P<key>[^:]+): ", re.M)
SUMMARY = re.compile(
    r"^job \S+ (?P<status>\w+): (?P<ok>\d+) succeeded, (?P<dlq>\d+) in the DLQ, "
    r"(?P<pending>\d+) pending",
    re.M,
)

Check = Callable[[Path, CliRun], None]


@dataclass(frozen=True)
class Case:
    """One corpus file: its expected warnings and the outcome of its run."""

    file: str
    warnings: frozenset[tuple[int, str]]
    status: str  # the job's final status in the summary line
    succeeded: int
    dlq: int
    pending: int = 0
    env: dict[str, str] = field(default_factory=dict)
    check: Check | None = None


def _text(root: Path, relative: str) -> str:
    return (root / relative).read_text(encoding="utf-8")


# -- what each run must leave behind -------------------------------------------------------


def _setup_pipeline(root: Path, run: CliRun) -> None:
    # json_path, filter (infix matches), sort_by, distinct and max_items chose these three
    done = sorted(p.name for p in root.glob("done-*.txt"))
    assert done == ["done-cli.txt", "done-core.txt", "done-net.txt"]
    # the setup capture from capture_outputs reached the items
    assert _text(root, "done-core.txt").strip() == "src/a.rs release-7"
    assert _text(root, "done-net.txt").strip() == "src/d.rs release-7"
    assert _text(root, "summary.txt").strip() == "3/3"
    results = json.loads(_text(root, "results.json"))
    assert [r["item"]["path"] for r in results] == ["src/d.rs", "src/a.rs", "src/f.rs"]


def _timeout_capture(root: Path, run: CliRun) -> None:
    # capture_output: true is ${shell.output}; capture_output: NAME a named capture
    assert _text(root, "prev-alpha.txt").strip() == "prev=checked alpha"
    assert _text(root, "prev-beta.txt").strip() == "prev=checked beta"
    assert _text(root, "tag-beta.txt").strip() == "v2"


def _capture_formats(root: Path, run: CliRun) -> None:
    # json fields, a line of lines, a number (42.0 is 42) and a boolean
    assert _text(root, "formats-x1.txt").strip() == "ann|t1|second|42|true"


def _on_failure_forms(root: Path, run: CliRun) -> None:
    # each handler form ran and saw the failed step's stdout (and stderr)
    assert _text(root, "handled-string.txt").strip() == "out-string|err-string"
    assert _text(root, "handled-list.txt").splitlines() == ["out2-list", "second"]
    assert _text(root, "handled-object.txt").strip() == "out3-object"
    assert _text(root, "handled-step.txt").strip() == "out5-step"
    # the clean item's last step saw the previous step's output
    assert _text(root, "ok-clean.txt").strip() == "ok out5-clean"
    assert not (root / "ok-string.txt").exists()


def _step_keys(root: Path, run: CliRun) -> None:
    # the warned keys changed nothing: both steps ran once for each item
    assert _text(root, "lint-good.rs.txt").splitlines() == ["lint good.rs", "fmt good.rs"]
    assert _text(root, "lint-bad.rs.txt").splitlines() == ["lint bad.rs", "fmt bad.rs"]
    # the step's name labels it in the DLQ's record
    job = run.job_id
    shown = subprocess.run(
        [*_mapwise(), "dlq", "show", job, "1", "--state-dir", str(root / "state")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert "break on purpose" in shown.stdout + shown.stderr


def _error_policy(root: Path, run: CliRun) -> None:
    # retry_config in map: every failing item had two attempts, the others one
    attempts = _text(root, "attempts.txt").splitlines()
    assert sorted(attempts) == [
        "a attempt 1",
        "b attempt 1",
        "b attempt 2",
        "c attempt 1",
        "d attempt 1",
        "d attempt 2",
    ]
    assert _text(root, "summary.txt").strip() == "2 ok, 2 failed"


def _max_failures(root: Path, run: CliRun) -> None:
    # max_failures: 1 stops at the first failed item (failed >= max_failures)
    assert _text(root, "seen.txt").splitlines() == ["first", "second"]
    assert not (root / "reduced.txt").exists()


def _env(root: Path, run: CliRun) -> None:
    path, derived, token, home, port = _text(root, "env-one.txt").strip().split("|")
    assert path.startswith("/corpus/bin:") and len(path) > len("/corpus/bin:")
    assert (derived, token, home, port) == ("/srv/corpus/data", "tok-1", str(root), "8080")


def _claude(root: Path, run: CliRun) -> None:
    # the claude step's capture_output: true is ${claude.output}
    assert _text(root, "review-ok.txt").strip() == "reviewed a.rs"
    assert _text(root, "review-bad.txt").strip() == "reviewed b.rs"
    # the /debug handler of the failed shell step is a claude step, given ${shell.output}
    argv = json.loads(_text(root, "record/1.json"))  # the last agent run of item 1 (bad)
    prompt = argv[argv.index("-p") + 1]
    assert prompt == "/debug tests failed in b.rs"
    assert _text(root, "summary.txt").strip() == "summary"


def _commit_shared(root: Path, run: CliRun) -> None:
    assert _text(root, "change-a.txt").strip() == "a"
    assert _text(root, "commit-a.txt").strip() == "no repo"
    assert not (root / "merged.txt").exists()  # the merge block is ignored here


def _worktree_merge(root: Path, run: CliRun) -> None:
    out = (root.parent / "merge-out.txt").read_text(encoding="utf-8").strip()
    assert out == "mapwise/J/result -> main"
    log = _git(root, "log", "--format=%s", "mapwise/J/result")
    assert "item a" in log and "item b" in log


def _spellings(root: Path, run: CliRun) -> None:
    assert _text(root, "out/steady.txt") == "steady build-42 not-really-secret"
    assert _text(root, "tries.txt").splitlines().count("flaky") == 2


CASES = [
    Case("01-setup-pipeline.yml", frozenset(), "completed", 3, 0, check=_setup_pipeline),
    Case(
        "02-timeout-capture-output.yml",
        frozenset(
            {
                (9, "map.timeout_config.timeout_policy"),
                (10, "map.timeout_config.cleanup_grace_period_secs"),
            }
        ),
        "completed",
        2,
        0,
        check=_timeout_capture,
    ),
    Case("03-capture-formats.yml", frozenset(), "completed", 1, 0, check=_capture_formats),
    Case(
        "04-on-failure-forms.yml",
        frozenset(
            {
                (8, "map.agent_template[0].on_failure"),
                (10, "map.agent_template[1].on_failure"),
                (19, "map.agent_template[3].on_failure"),
                (21, "map.agent_template[4].on_failure"),
                (23, "map.agent_template[4].on_failure.max_attempts"),
            }
        ),
        "completed",
        1,
        5,
        check=_on_failure_forms,
    ),
    Case(
        "05-step-keys.yml",
        frozenset(
            {
                (9, "map.agent_template[0].retry"),
                (13, "map.agent_template[1].retry_config"),
                (15, "map.agent_template[1].on_exit_code"),
            }
        ),
        "completed",
        1,
        1,
        check=_step_keys,
    ),
    Case(
        "06-error-policy.yml",
        frozenset({(6, "map.on_item_failure"), (20, "error_policy.error_collection")}),
        "completed",
        2,
        2,
        check=_error_policy,
    ),
    Case(
        "07-stop-at-max-failures.yml",
        frozenset({(6, "error_collection")}),
        "failed",
        1,
        1,
        pending=1,
        check=_max_failures,
    ),
    Case(
        "08-env.yml",
        frozenset(),
        "completed",
        2,
        0,
        env={"CORPUS_TOKEN": "tok-1", "CORPUS_WORKERS": "2"},
        check=_env,
    ),
    Case(
        "09-claude.yml",
        frozenset({(11, "map.agent_template[2].on_failure")}),
        "completed",
        1,
        1,
        check=_claude,
    ),
    Case(
        "10-commit-no-worktree.yml",
        frozenset(
            {
                (4, "commit_required"),
                (10, "map.agent_template[0].commit_required"),
                (11, "map.agent_template[1].shell"),
                (13, "merge"),
            }
        ),
        "completed",
        1,
        0,
        check=_commit_shared,
    ),
    Case(
        "11-worktree-merge.yml",
        frozenset(),
        "completed",
        2,
        0,
        check=_worktree_merge,
    ),
    Case(
        "12-spellings.yml",
        frozenset(
            {
                (8, "env.API_KEY.secret"),
                (22, "map.retry_config.backoff"),
                (28, "map.agent_template[0].write_file.create_dirs"),
            }
        ),
        "completed",
        2,
        0,
        check=_spellings,
    ),
]


def _param(case: Case) -> object:
    return pytest.param(case, id=case.file.removesuffix(".yml"))


def _mapwise() -> list[str]:
    return [sys.executable, "-m", "mapwise"]


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout


def test_the_corpus_covers_every_file() -> None:
    files = sorted(p.name for p in CORPUS.glob("*.yml"))
    assert files == sorted(case.file for case in CASES)
    assert 8 <= len(files) <= 12


def _copy(project: Project, case: Case) -> Path:
    """The corpus in the project folder (a git repository for a worktree job)."""
    root = project.root / "corpus"
    shutil.copytree(CORPUS, root)
    if case.file == "11-worktree-merge.yml":
        _git(root, "init", "--quiet", "--initial-branch=main")
        _git(root, "config", "user.name", "Corpus")
        _git(root, "config", "user.email", "corpus@example.com")
        (root / ".gitignore").write_text("state/\n", encoding="utf-8")
        _git(root, "add", "-A")
        _git(root, "commit", "--quiet", "-m", "corpus")
    return root


def _cli(root: Path, env: dict[str, str], *args: str) -> CliRun:
    done = subprocess.run(
        [*_mapwise(), *args],
        cwd=root,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return CliRun(tuple(args), done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_validate_gives_exactly_the_expected_warnings(project: Project, case: Case) -> None:
    # Given a corpus file (and the environment its run would have)
    root = _copy(project, case)

    # When it is validated through the command line
    checked = _cli(root, case.env, "validate", case.file)

    # Then it is valid, with exactly its warnings, each naming this file, a line and a key
    assert checked.returncode == 0, checked.stderr
    found = WARNING.findall(checked.stderr)
    assert {name for name, _, _ in found} <= {case.file}
    assert {(int(line), key) for _, line, key in found} == case.warnings, checked.stderr


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_the_file_runs_as_it_intends(project: Project, case: Case) -> None:
    # Given a copy of the corpus, the fake agent, and the environment the file reads
    root = _copy(project, case)
    env = {
        **case.env,
        "HOME": str(root),
        "FAKE_CLAUDE_RECORD_DIR": str(root / "record"),
        "MERGE_OUT": str(root.parent / "merge-out.txt"),
    }
    extra = ("--job-id", "J") if case.file == "11-worktree-merge.yml" else ()
    state = root.parent / "state" if extra else root / "state"

    # When it runs end to end
    done = _cli(root, env, "run", case.file, "--state-dir", str(state), *extra)

    # Then its items succeed or reach the DLQ as the file means them to
    summary = SUMMARY.search(done.stderr)
    assert summary is not None, done.stderr
    outcome = (summary["status"], int(summary["ok"]), int(summary["dlq"]), int(summary["pending"]))
    assert outcome == (case.status, case.succeeded, case.dlq, case.pending), done.stderr
    assert done.returncode == (0 if case.dlq == 0 and case.status == "completed" else 1)
    # And the files it made show that each construct did its work
    if case.check is not None:
        case.check(root, done)
