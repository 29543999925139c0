"""Bad input: malformed inputs, workflow files and command lines exit 2, naming the place.

Beyond ``tests/unit/test_bad_workflows.py`` (which checks what the loader says about bad
YAML content): here the whole command runs, in-process through the CLI's entry point
(``run_main``), on inputs that break at run time (the map input, the item pipeline),
workflow *files* that are not text or not files, and command lines (options, job ids,
checkpoints, imports) of every command. Each case must exit 2, print a message holding
the listed fragments (the file, the option, the id, the key), run nothing, and never
print a traceback.

Cases that need a job copy the state of one finished job (three items, one in the DLQ).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import mapwise
from helpers.project import CliRun, run_main
from helpers.reliability import no_traceback

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX files and commands")

JOB = "j1"
DLQ_ITEM = "n2"


def workflow(*, input: str = "items.json", map_extra: str = "", step: str = "touch ran") -> str:
    """A valid workflow but for what the case changes; its commands mark that they ran."""
    return (
        "name: t\n"
        "map:\n"
        f"  input: {json.dumps(input)}\n"
        f"{map_extra}"
        "  agent_template:\n"
        f"    - shell: {json.dumps(step)}\n"
    )


Files = Mapping[str, str | bytes | None]  # None: a folder
VALID: Files = {"wf.yml": workflow(), "items.json": "[1]"}


@dataclass(frozen=True)
class Bad:
    """One bad invocation: the files it needs, the command line, what the message says."""

    args: tuple[str, ...]  # "{root}" is the case's folder; --state-dir is appended
    fragments: tuple[str, ...]
    files: Files = field(default_factory=dict)  # `run wf.yml` without wf.yml gets VALID
    needs_job: bool = False  # copy the finished job's state first
    state_dir: bool = True  # append --state-dir (not for validate)


CASES: dict[str, Bad | tuple[Bad, pytest.MarkDecorator]] = {
    # -- the map input, read at run time ------------------------------------------------
    "input-json-syntax": Bad(
        ("run", "wf.yml"),
        ("items.json", "not valid JSON", "line 1"),
        {"wf.yml": workflow(), "items.json": "[1, 2,"},
    ),
    "input-json-extra-data": Bad(
        ("run", "wf.yml"),
        ("items.json", "not valid JSON"),
        {"wf.yml": workflow(), "items.json": "[1] [2]"},
    ),
    "input-json-not-utf8": Bad(
        ("run", "wf.yml"),
        ("items.json", "not UTF-8"),
        {"wf.yml": workflow(), "items.json": b'["\xff\xfe"]'},
    ),
    "input-jsonl-not-utf8": Bad(
        ("run", "wf.yml"),
        ("items.jsonl", "not UTF-8"),
        {"wf.yml": workflow(input="items.jsonl"), "items.jsonl": b"\xff\n"},
    ),
    "input-missing": Bad(("run", "wf.yml"), ("items.json", "not found"), {"wf.yml": workflow()}),
    "input-is-a-folder": Bad(
        ("run", "wf.yml"), ("items.json",), {"wf.yml": workflow(), "items.json": None}
    ),
    "input-command-fails": Bad(
        ("run", "wf.yml"),
        ("input command failed", "exit code 3", "oops"),
        {"wf.yml": workflow(input="echo oops >&2; exit 3")},
    ),
    "input-command-not-found": Bad(
        ("run", "wf.yml"),
        ("no-such-command-xyz", "exit code 127"),
        {"wf.yml": workflow(input="no-such-command-xyz")},
    ),
    "input-command-killed": Bad(
        ("run", "wf.yml"),
        ("input command failed", "killed by signal 9"),
        {"wf.yml": workflow(input="kill -9 $$")},
    ),
    "input-command-prints-nothing": Bad(
        ("run", "wf.yml"),
        ("produced no items", "true"),
        {"wf.yml": workflow(input="true")},
    ),
    "input-command-not-utf8": Bad(
        ("run", "wf.yml"),
        ("input command output is not UTF-8",),
        {"wf.yml": workflow(input="printf '\\377'")},
    ),
    "setup-writes-bad-input": Bad(
        ("run", "wf.yml"),
        ("gen.json", "not valid JSON"),
        {"wf.yml": "setup:\n  - shell: echo '[1,' > gen.json\n" + workflow(input="gen.json")},
    ),
    "validate-bad-input": Bad(
        ("validate", "wf.yml"),
        ("items.json", "not valid JSON"),
        {"wf.yml": workflow(), "items.json": "{"},
        state_dir=False,
    ),
    # -- the item pipeline ----------------------------------------------------------------
    "json-path-matches-nothing": Bad(
        ("run", "wf.yml"),
        ("json_path '$.nothing[*]'", "matched nothing"),
        {"wf.yml": workflow(map_extra='  json_path: "$.nothing[*]"\n'), "items.json": "[1]"},
    ),
    "json-path-on-a-number": Bad(
        ("run", "wf.yml"),
        ("matched nothing", "a number"),
        {"wf.yml": workflow(map_extra='  json_path: "$[*]"\n'), "items.json": "42"},
    ),
    "duplicate-ids": Bad(
        ("run", "wf.yml"),
        ("item ids must be unique", "'a'", "positions 0, 1"),
        {
            "wf.yml": workflow(map_extra='  id: "${item.id}"\n'),
            "items.json": '[{"id": "a"}, {"id": "a"}]',
        },
    ),
    "empty-id": Bad(
        ("run", "wf.yml"),
        ("item ids must not be empty", "0"),
        {"wf.yml": workflow(map_extra='  id: "${item.id}"\n'), "items.json": '[{"id": ""}]'},
    ),
    "id-field-missing": Bad(
        ("run", "wf.yml"),
        ("${item.name}", "item #1"),
        {
            "wf.yml": workflow(map_extra='  id: "${item.name}"\n'),
            "items.json": '[{"name": "a"}, {"other": 1}]',
        },
    ),
    "template-field-missing": Bad(
        ("run", "wf.yml"),
        ("some items lack", "item.name", "index 1"),
        {
            "wf.yml": workflow(step="touch ran; echo ${item.name}"),
            "items.json": '[{"name": "a"}, {"other": 1}]',
        },
    ),
    # -- the workflow file ------------------------------------------------------------------
    "workflow-missing": Bad(("run", "nosuch.yml"), ("nosuch.yml", "No such file")),
    "workflow-missing-validate": Bad(
        ("validate", "nosuch.yml"), ("nosuch.yml", "No such file"), state_dir=False
    ),
    "workflow-is-a-folder": Bad(("run", "wf"), ("'wf'", "is a directory"), {"wf": None}),
    "workflow-is-a-folder-validate": Bad(
        ("validate", "wf"), ("'wf'", "is a directory"), {"wf": None}, state_dir=False
    ),
    "workflow-binary": Bad(
        ("run", "wf.yml"),
        ("wf.yml:1", "not UTF-8", "0x89"),
        {"wf.yml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\xff\xfe"},
    ),
    "workflow-latin1": Bad(
        ("run", "wf.yml"), ("wf.yml:1", "0xe9"), {"wf.yml": "name: caf\xe9\n".encode("latin-1")}
    ),
    "workflow-nul-byte": Bad(("run", "wf.yml"), ("wf.yml:1", "#x0000"), {"wf.yml": "name: a\0b\n"}),
    "workflow-only-a-bom": Bad(("run", "wf.yml"), ("wf.yml:1", "empty"), {"wf.yml": "\ufeff"}),
    "workflow-deeply-nested": Bad(
        ("run", "wf.yml"), ("wf.yml",), {"wf.yml": "name: d\nmap: " + "[" * 400 + "]" * 400}
    ),
    # -- run's command line ---------------------------------------------------------------
    "run-without-workflow": Bad(("run",), ("Missing argument 'WORKFLOW'",)),
    "run-max-parallel-text": Bad(
        ("run", "wf.yml", "--max-parallel", "abc"), ("--max-parallel", "'abc'")
    ),
    "run-max-parallel-negative": Bad(
        ("run", "wf.yml", "--max-parallel", "-3"), ("--max-parallel", "-3")
    ),
    "run-max-parallel-fraction": Bad(
        ("run", "wf.yml", "--max-parallel", "1.5"), ("--max-parallel", "'1.5'")
    ),
    "run-job-id-slash": Bad(("run", "wf.yml", "--job-id", "a/b"), ("invalid job id 'a/b'",)),
    "run-job-id-dotdot": Bad(("run", "wf.yml", "--job-id", ".."), ("invalid job id '..'",)),
    "run-job-id-space": Bad(("run", "wf.yml", "--job-id", "my job"), ("invalid job id 'my job'",)),
    "run-job-id-too-long": Bad(("run", "wf.yml", "--job-id", "a" * 129), ("at most 128",)),
    "run-job-id-empty": Bad(("run", "wf.yml", "--job-id", ""), ("--job-id", "invalid job id ''")),
    "run-job-id-taken": Bad(
        ("run", "wf.yml", "--job-id", JOB), (f"job '{JOB}' already exists",), needs_job=True
    ),
    "run-state-dir-is-a-file": Bad(
        ("run", "wf.yml", "--state-dir", "{root}/afile"),
        ("--state-dir", "is a file"),
        {"afile": "x"},
        state_dir=False,
    ),
    "unknown-command": Bad(("frobnicate",), ("No such command 'frobnicate'",)),
    "unknown-option": Bad(("run", "wf.yml", "--bogus"), ("No such option", "--bogus")),
    # -- resume -----------------------------------------------------------------------------
    "resume-unknown-job": Bad(("resume", "nosuch"), ("no job 'nosuch'",)),
    "resume-invalid-job-id": Bad(("resume", "../x"), ("invalid job id '../x'",)),
    "resume-conflicting-workflow-flags": Bad(
        ("resume", JOB, "--reload-workflow", "--keep-workflow"),
        ("--reload-workflow", "--keep-workflow"),
        needs_job=True,
    ),
    "resume-from-a-missing-checkpoint": Bad(
        ("resume", JOB, "--from-checkpoint", "99"),
        ("no checkpoint 99", "it has: 1"),
        needs_job=True,
    ),
    "resume-from-checkpoint-zero": Bad(
        ("resume", JOB, "--from-checkpoint", "0"), ("no checkpoint 0",), needs_job=True
    ),
    "resume-from-checkpoint-text": Bad(
        ("resume", JOB, "--from-checkpoint", "x"), ("--from-checkpoint", "'x'"), needs_job=True
    ),
    "resume-max-parallel-zero": Bad(
        ("resume", JOB, "--max-parallel", "0"), ("--max-parallel",), needs_job=True
    ),
    # -- import and export ------------------------------------------------------------------
    "import-a-folder": Bad(("import", "afolder"), ("afolder", "is a directory"), {"afolder": None}),
    "import-missing": Bad(("import", "nosuch.ckpt"), ("nosuch.ckpt", "does not exist")),
    "import-a-text-file": Bad(("import", "notes.txt"), ("notes.txt",), {"notes.txt": "hello\n"}),
    "import-gzip-not-a-checkpoint": Bad(
        ("import", "x.ckpt"),
        ("x.ckpt", "is not a mapwise checkpoint"),
        {"x.ckpt": gzip.compress(b'{"format": "x"}\n')},
    ),
    "import-bad-job-id": Bad(
        ("import", "{root}/state/jobs/j1/checkpoints/ckpt-000001.ckpt", "--job-id", "bad id"),
        ("invalid job id 'bad id'",),
        needs_job=True,
    ),
    "import-over-an-existing-job": Bad(
        ("import", "{root}/state/jobs/j1/checkpoints/ckpt-000001.ckpt"),
        (f"job '{JOB}' already exists", "--job-id"),
        needs_job=True,
    ),
    "export-without-output": Bad(("export", JOB), ("Missing option", "--output")),
    "export-to-a-folder": Bad(
        ("export", JOB, "-o", "afolder"), ("afolder", "is a directory"), {"afolder": None}
    ),
    "export-unknown-job": Bad(("export", "nosuch", "-o", "x.ckpt"), ("no job 'nosuch'",)),
    # -- inspection and the DLQ -------------------------------------------------------------
    "logs-attempt-zero": Bad(
        ("logs", JOB, DLQ_ITEM, "--attempt", "0"),
        (f"'{DLQ_ITEM}' has no attempt 0",),
        needs_job=True,
    ),
    "logs-attempt-text": Bad(
        ("logs", JOB, DLQ_ITEM, "--attempt", "x"), ("--attempt", "'x'"), needs_job=True
    ),
    "dlq-retry-unknown-item": Bad(
        ("dlq", "retry", JOB, "nosuch"), ("no item 'nosuch'",), needs_job=True
    ),
    "dlq-purge-a-succeeded-item": Bad(
        ("dlq", "purge", JOB, "n1"), ("'n1' is not in the DLQ", "succeeded"), needs_job=True
    ),
    "dlq-show-without-item": Bad(("dlq", "show", JOB), ("Missing argument 'ITEM_ID'",)),
    "checkpoints-unknown-job": Bad(("checkpoints", "nosuch"), ("no job 'nosuch'",)),
    "verify-invalid-job-id": Bad(("verify", "../x"), ("invalid job id '../x'",)),
    "repair-unknown-job": Bad(("repair", "nosuch"), ("no job 'nosuch'",)),
    "jobs-extra-argument": Bad(("jobs", "extra"), ("unexpected extra argument (extra)",)),
}


def _params() -> list[object]:
    params: list[object] = []
    for name, case in CASES.items():
        bad, marks = case if isinstance(case, tuple) else (case, ())
        params.append(pytest.param(bad, id=name, marks=marks))
    return params


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished job (n1 and n3 succeeded, n2 in the DLQ); its folder holds ``state``."""
    root = tmp_path_factory.mktemp("finished")
    (root / "items.json").write_text("[1, 2, 3]")
    (root / "wf.yml").write_text(
        workflow(
            map_extra='  id: "n${item}"\n  retry: {max_attempts: 1}\n',
            step='test "${item}" != 2',
        )
    )
    result = mapwise.run_workflow(
        root / "wf.yml", state_dir=root / "state", job_id=JOB, install_signal_handlers=False
    )
    assert (result.succeeded, result.dlq) == (2, 1)
    return root


def _write(root: Path, files: Files) -> None:
    for name, content in files.items():
        path = root / name
        if content is None:
            path.mkdir(parents=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _invoke(bad: Bad, root: Path) -> CliRun:
    args = [arg.replace("{root}", str(root)) for arg in bad.args]
    if bad.state_dir:
        args += ["--state-dir", str(root / "state")]
    return run_main(*args)


@pytest.mark.parametrize("bad", _params())
def test_bad_input_exits_2_naming_the_place(
    bad: Bad, finished_job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the case's files (and a copy of the finished job's state if it needs one)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    given_workflow = "wf.yml" in bad.files or bad.args[:2] != ("run", "wf.yml")
    _write(tmp_path, bad.files if given_workflow else {**VALID, **bad.files})
    if bad.needs_job:
        shutil.copytree(finished_job / "state", tmp_path / "state")

    # When the command runs
    done = _invoke(bad, tmp_path)

    # Then it exits 2 with a message naming the place, runs nothing, and no traceback
    no_traceback(done.stdout, done.stderr)
    assert done.returncode == 2, done.stdout + done.stderr
    for fragment in bad.fragments:
        assert fragment in done.stderr, f"{fragment!r} not in {done.stderr!r}"
    assert not (tmp_path / "ran").exists()


def test_the_table_has_at_least_40_cases() -> None:
    assert len(CASES) >= 40


def test_an_unreadable_workflow_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a workflow file nobody may read
    monkeypatch.chdir(tmp_path)
    (tmp_path / "items.json").write_text("[1]")
    path = tmp_path / "wf.yml"
    path.write_text(workflow())
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("this user reads files whatever their mode (root)")
        # Then run and validate exit 2 naming it, without a traceback
        for args in (("run", "wf.yml", "--state-dir", "state"), ("validate", "wf.yml")):
            done = run_main(*args)
            no_traceback(done.stderr)
            assert done.returncode == 2
            assert "wf.yml" in done.stderr
            assert "Permission denied" in done.stderr
    finally:
        path.chmod(0o600)


def test_a_refused_resume_changes_nothing(
    finished_job: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a copy of the finished job
    monkeypatch.chdir(tmp_path)
    shutil.copytree(finished_job / "state", tmp_path / "state")
    state = str(tmp_path / "state")
    before = json.loads(run_main("status", JOB, "--json", "--state-dir", state).stdout)

    # When a resume with contradictory options is refused
    done = run_main(
        "resume",
        JOB,
        "--from-checkpoint",
        "1",
        "--reload-workflow",
        "--keep-workflow",
        "--state-dir",
        state,
    )
    assert done.returncode == 2
    no_traceback(done.stderr)

    # Then the job is as it was: nothing rewound, nothing backed up
    after = json.loads(run_main("status", JOB, "--json", "--state-dir", state).stdout)
    assert after["progress"] == before["progress"]
    assert list((tmp_path / "state" / "jobs" / JOB).glob("backup-*")) == []
