"""Issue 14, points 5, 6, 8 and 11 through the installed command line (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mapwise

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells")

SRC = str(Path(mapwise.__file__).resolve().parents[1])


def mapwise_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    # a generous timeout: the old code ran for minutes on the alias bomb
    return subprocess.run(
        [sys.executable, "-m", "mapwise", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_workflow(folder: Path, body: str, items: object) -> Path:
    (folder / "items.json").write_text(json.dumps(items), encoding="utf-8")
    path = folder / "wf.yml"
    path.write_text(body, encoding="utf-8")
    return path


def test_validate_refuses_an_alias_bomb_quickly(tmp_path: Path) -> None:
    # Given a 600-byte alias bomb under `merge:`
    lines = ["name: bomb", "merge:", "  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 10):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    workflow = write_workflow(tmp_path, "\n".join(lines) + "\n", [1])
    # When it is validated
    run = mapwise_cli(tmp_path, "validate", str(workflow))
    # Then it finishes with a usage error naming the aliases, and no traceback
    assert run.returncode == 2
    assert "alias" in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""


def test_run_with_sort_by_on_depth_500_items_completes(tmp_path: Path) -> None:
    # Given depth-500 items sorted by their deep field
    deep: object = 0
    for _ in range(500):
        deep = [deep]
    workflow = write_workflow(
        tmp_path,
        'name: deep\nmap:\n  input: items.json\n  id: "${item.id}"\n  sort_by: d\n'
        '  agent_template:\n    - shell: "true"\n',
        [{"id": "a", "d": deep}, {"id": "b", "d": deep}],
    )
    # When the job runs
    run = mapwise_cli(tmp_path, "run", str(workflow), "--state-dir", str(tmp_path / "st"))
    # Then it completes instead of crashing with a RecursionError
    assert run.returncode == 0, run.stderr
    assert "RecursionError" not in run.stderr


def test_validate_refuses_a_recursive_on_failure(tmp_path: Path) -> None:
    # Given an on_failure handler that names itself through an alias
    workflow = write_workflow(
        tmp_path,
        "name: r\nmap:\n  input: items.json\n  agent_template:\n    - shell: 'false'\n"
        "      on_failure: &t\n        shell: 'echo hi'\n        on_failure: *t\n",
        [1],
    )
    # When it is validated
    run = mapwise_cli(tmp_path, "validate", str(workflow))
    # Then it is refused, not silently dropped
    assert run.returncode == 2
    assert "recursive alias" in run.stderr


def test_validate_with_duplicate_ids_prints_nothing_on_stdout(tmp_path: Path) -> None:
    # Given two items with the same id
    workflow = write_workflow(
        tmp_path,
        'name: d\nmap:\n  input: items.json\n  id: "${item.id}"\n'
        '  agent_template:\n    - shell: "true"\n',
        [{"id": "a"}, {"id": "a"}],
    )
    # When it is validated
    run = mapwise_cli(tmp_path, "validate", str(workflow))
    # Then it fails with nothing on stdout ("valid" would contradict the error)
    assert run.returncode == 2
    assert "must be unique" in run.stderr
    assert run.stdout == ""
