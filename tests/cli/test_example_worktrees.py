"""examples/agents-in-worktrees/run.sh runs as its README says: offline, in seconds, in a
repository of its own, and ends with one merge per item on the job's branch."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "agents-in-worktrees"

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells"),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]


def test_the_example_merges_every_item_once(tmp_path: Path) -> None:
    # Given the venv's mapwise first on PATH, and a temporary folder of the test's own
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp_path),
    }
    env.pop("MAPWISE", None)
    env.pop("MAPWISE_STATE_DIR", None)

    # When the example runs from the repository's root
    done = subprocess.run(
        ["bash", str(EXAMPLE / "run.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Then it completes, and the printed log shows each item merged exactly once
    assert done.returncode == 0, done.stdout + done.stderr
    names = [item["name"] for item in json.loads((EXAMPLE / "items.json").read_text())]
    merges = re.findall(r"mapwise: merge (\S+)", done.stdout)
    assert sorted(merges) == sorted(names)
    # the agent's own commits, and mapwise's commit of what the agent left uncommitted
    for name in names:
        assert f"agent: test {name}" in done.stdout
    assert "mapwise: beta" in done.stdout
    assert "agent: review alpha" in done.stdout
    assert "the branch to merge: mapwise/agents-demo/result" in done.stdout
    # everything it made is in the temporary folder
    (made,) = tmp_path.iterdir()
    assert made.name.startswith("mapwise-agents-in-worktrees.")
