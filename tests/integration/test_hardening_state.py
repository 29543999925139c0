"""Issue 14, points 1 to 4: a hostile or careless setting of the state directory, the
parallelism or the checkpoint knobs is a clear one-line error (or a documented meaning),
never a traceback nor a half-made job. Every case runs the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.project import CliRun, Project, mapreduce


def _one_clear_line(done: CliRun, *words: str) -> None:
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("mapwise: error:")]
    assert len(errors) == 1, done.stderr
    for word in words:
        assert word in errors[0], errors[0]


def _unusable_dirs(root: Path) -> dict[str, tuple[str, str]]:
    """name -> (the state directory to pass, a word its error must hold)."""
    (root / "plain-file").write_text("not a folder\n")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "loop").symlink_to(root / "loop")
    return {
        "a regular file": (str(root / "plain-file"), "is a file"),
        "under a file": (str(root / "plain-file" / "sub"), "is a file"),
        "a dangling symlink": (str(root / "dangling"), "symlink to nothing"),
        "a symlink loop": (str(root / "loop"), "symlink loop"),
    }


@pytest.mark.parametrize("via", ["flag", "env"])
@pytest.mark.parametrize(
    "case", ["a regular file", "under a file", "a dangling symlink", "a symlink loop"]
)
def test_an_unusable_state_dir_is_exit_2_with_one_line_for_every_command(
    project: Project, case: str, via: str
) -> None:
    # Given a job exported from a good state directory, and a state directory that
    # cannot be one (a file, under a file, a dangling symlink, a symlink loop)
    project.workflow(mapreduce(["true"]), items=[1])
    assert project.run_cli("--job-id", "j", "-q").returncode == 0
    export = project.cli("export", "j", "-o", "j.ckpt", "--state-dir", str(project.state_dir))
    assert export.returncode == 0, export.stderr
    state_dir, why = _unusable_dirs(project.root)[case]
    commands = [
        ("run", str(project.workflow_path)),
        ("import", "j.ckpt"),
        ("jobs", "--all", "--json"),
        ("status", "j"),
        ("verify", "j"),
        ("dlq", "list", "j"),
    ]
    for command in commands:
        # When each command is given it by --state-dir or by MAPWISE_STATE_DIR
        if via == "flag":
            done = project.cli(*command, "--state-dir", state_dir)
        else:
            done = project.cli(*command, env={"MAPWISE_STATE_DIR": state_dir})

        # Then it exits 2 with one line naming the directory, where it came from and
        # why, and prints nothing on stdout (no `[]` from `jobs --json`)
        assert done.returncode == 2, (command, done.stderr)
        source = "--state-dir" if via == "flag" else "MAPWISE_STATE_DIR"
        _one_clear_line(done, "state directory", source, why)
        assert done.stdout == "", (command, done.stdout)
    assert not (project.root / "nowhere").exists()


@contextlib.contextmanager
def _read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` seen through a read-only bind mount at ``target`` (root only)."""
    target.mkdir()
    steps = [
        ["mount", "--bind", str(source), str(target)],
        ["mount", "-o", "remount,ro,bind", str(target)],
    ]
    for number, step in enumerate(steps):
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            if number:
                subprocess.run(["umount", str(target)], check=False)
            pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="a bind mount needs root")
def test_a_read_only_state_dir_is_read_normally_and_writers_say_read_only(
    project: Project,
) -> None:
    # Given a completed job with an item in the DLQ, seen through a read-only mount
    project.workflow(mapreduce(['test "${item}" != 2']), items=[1, 2])
    assert project.run_cli("--job-id", "j", "-q").returncode == 1
    with _read_only_view(project.state_dir, project.root / "ro") as ro:
        state = ("--state-dir", str(ro))

        # When the reading commands read it
        status = project.cli("status", "j", "--json", *state)
        jobs = project.cli("jobs", "--all", "--json", *state)
        dlq = project.cli("dlq", "list", "j", *state)
        verify = project.cli("verify", "j", *state)

        # Then they read normally, and verify finds nothing wrong with the intact job
        for done in (status, jobs, dlq, verify):
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr
        assert status.json()["job_id"] == "j"
        assert [job["job_id"] for job in jobs.json()] == ["j"]
        assert "2" in dlq.stdout
        assert "damaged" not in verify.stdout + verify.stderr
        assert "repair" not in verify.stdout + verify.stderr

        # When the writing commands are tried on it
        writers = [
            ("run", str(project.workflow_path)),
            ("resume", "j"),
            ("repair", "j"),
            ("dlq", "purge", "j"),
        ]
        for command in writers:
            done = project.cli(*command, *state)

            # Then each says "read-only" in one line and exits 1 (StateReadOnlyError)
            assert done.returncode == 1, (command, done.stderr)
            _one_clear_line(done, "read-only", "not damage")
    assert sorted(p.name for p in (project.state_dir / "jobs").iterdir()) == ["j"]


@pytest.mark.parametrize(
    ("how", "number"),
    [("option", "100000000000000000000"), ("yaml", "100000000000000000000"), ("yaml", "10001")],
)
def test_a_huge_max_parallel_is_refused_before_any_job_is_made(
    project: Project, how: str, number: str
) -> None:
    # Given a workflow whose item would leave a mark, and a max_parallel past 10,000
    spec = mapreduce(["touch ran-${item}"])
    if how == "yaml":
        spec["map"]["max_parallel"] = int(number)
    project.workflow(json.dumps(spec), items=[1])
    extra = ("--max-parallel", number) if how == "option" else ()

    # When it is run
    done = project.run_cli("--job-id", "big", *extra)

    # Then it is refused with exit 2 and a clear message, and no job was started
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "10000" in done.stderr.replace(",", "")
    assert not project.job_dir("big").exists()
    assert not list(project.root.glob("ran-*"))


@pytest.mark.parametrize(
    "knobs",
    [
        {"MAPWISE_CHECKPOINT_ITEMS": "inf"},
        {"MAPWISE_CHECKPOINT_ITEMS": "1e400"},
        {"MAPWISE_CHECKPOINT_KEEP": "nan"},
        {"MAPWISE_CHECKPOINT_KEEP": "inf", "MAPWISE_CHECKPOINT_SECONDS": "nan"},
    ],
)
def test_checkpoint_knobs_of_inf_or_nan_never_crash_a_run(
    project: Project, knobs: dict[str, str]
) -> None:
    # Given checkpoint knobs set to inf (never / keep all), 1e400 (inf) or nan (ignored)
    project.workflow(mapreduce(["true"]), items=[1, 2, 3])

    # When a job runs with them
    done = project.run_cli("--job-id", "k", "-q", env=knobs)

    # Then it completes, and the checkpoints of its phase boundaries are written
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert any((project.job_dir("k") / "checkpoints").iterdir())
    assert project.db("k").job()["status"] == "completed"
