"""What the reliability suites share: the other test folders' helpers, seeds, processes.

The suites reuse ``tests/conftest.py`` (``Project``, ``run_main``, ...) and
``tests/integration/_jobs.py`` (``Workspace``, ``Coordinator``, markers, ...) without
editing them. This folder has a ``conftest.py`` of its own (the ``--long`` option), and
pytest imports every folder's ``conftest.py`` under the one name ``conftest``, so
``from conftest import ...`` here would find ours; the root one is loaded by its path
instead, under a private name.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS / "integration") not in sys.path:
    sys.path.insert(0, str(TESTS / "integration"))

LONG_ENV = "MAPWISE_RELIABILITY_LONG"


def _load_root_conftest() -> ModuleType:
    name = "_mapwise_root_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


root_conftest = _load_root_conftest()
CliRun = root_conftest.CliRun
Project = root_conftest.Project
mapreduce = root_conftest.mapreduce
run_main = root_conftest.run_main


def seed_from(variable: str) -> int:
    """A random seed, or the one given in ``variable``; printed so a failure reproduces."""
    given = os.environ.get(variable)
    seed = int(given) if given else random.randrange(2**32)
    print(f"seed: {variable}={seed}")
    return seed


def job_processes(job_id: str) -> list[int]:
    """Live processes whose environment holds ``MAPWISE_JOB_ID=<job_id>`` (every command
    of the job has it, noted or not). Zombies are dead; this process is never counted."""
    needle = f"MAPWISE_JOB_ID={job_id}".encode() + b"\0"
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state = stat[stat.rfind(")") + 2 :].split()[0]
        if state not in ("Z", "X") and (environ.startswith(needle) or b"\0" + needle in environ):
            found.append(int(entry))
    return found


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text
