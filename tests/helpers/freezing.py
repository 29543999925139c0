"""Freezing items into a new job, both ways, for the freeze tests to compare: the
streamed freeze (``freeze_into``) and resolving the items as one list."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from mapwise.engine.freeze import freeze_into, resolve_items
from mapwise.store.itemrows import items_digest
from mapwise.store.jobstore import JobStore
from mapwise.store.paths import job_paths
from mapwise.workflow.loader import load_workflow

ENV = {"PATH": "/usr/bin:/bin"}


def write_workflow(folder: Path, template: str = "true", **map_options: Any) -> Path:
    spec = {"name": "t", "map": {"input": "items.json", **map_options}}
    spec["map"]["agent_template"] = [{"shell": template}]
    path = folder / "wf.yml"
    path.write_text(json.dumps(spec))
    return path


def frozen(folder: Path, workflow: Path) -> tuple[Any, ...]:
    """What the streamed freeze stores (or raises), in a new job."""
    loaded = load_workflow(workflow)
    state = folder / "state"
    shutil.rmtree(state, ignore_errors=True)
    paths = job_paths(state, "j")
    paths.root.parent.mkdir(parents=True)
    store = JobStore.create(
        paths,
        workflow_name="t",
        workflow_path=str(workflow),
        workflow_source=loaded.source,
        workflow_sha256=loaded.sha256,
        options={},
    )
    try:
        count = freeze_into(store, loaded.workflow, job_id="j", base_dir=folder, base_env=ENV)
    except Exception as exc:
        # nothing of the items is stored, and the job has not left setup
        job = store.job()
        assert (job.phase.value, job.total_items, job.input_sha256) == ("setup", None, None)
        assert store.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
        return ("error", type(exc), str(exc))
    job = store.job()
    rows = store.conn.execute("SELECT idx, item_id, data FROM items ORDER BY idx").fetchall()
    assert job.phase.value == "map"
    assert count == job.total_items == len(rows)
    return ("ok", [tuple(row) for row in rows], job.items_sha256, job.input_sha256)


def listed(folder: Path, workflow: Path) -> tuple[Any, ...]:
    """What resolving the items as one list gives, stored as freeze_items always stored it."""
    loaded = load_workflow(workflow)
    try:
        items, input_sha256 = resolve_items(
            loaded.workflow, job_id="j", base_dir=folder, base_env=ENV, captures={}
        )
    except Exception as exc:
        return ("error", type(exc), str(exc))
    rows = [
        (i, item.item_id, json.dumps(item.value, separators=(",", ":"), ensure_ascii=False))
        for i, item in enumerate(items)
    ]
    return ("ok", rows, items_digest((r[1], r[2]) for r in rows), input_sha256)
