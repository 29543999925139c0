"""Resolving the work items after setup and freezing them into the job.

The input is read once, after setup (setup often writes it); the resolved list is stored
with a hash, and every later run uses the frozen copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mapwise.engine.context import JobContext
from mapwise.errors import InterpolationError
from mapwise.interpolate import Scope, find_placeholders, missing_item_fields, render_plain
from mapwise.items import Item, read_input, select_items
from mapwise.workflow.model import Step, Workflow

MAX_REPORTED_MISSING = 10


def input_digest(data: Any) -> str:
    """A hash of the input as read, to tell on resume whether it changed since."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def step_templates(steps: Iterable[Step]) -> list[str]:
    """Every interpolated text of ``steps`` and their on_failure steps."""
    texts: list[str] = []
    for step in steps:
        texts += [t for t in (step.shell, step.claude, step.working_dir) if t]
        texts += list(step.env.values())
        if step.write_file is not None:
            texts += [step.write_file.path, step.write_file.content]
        texts += step_templates(step.on_failure)
    return texts


def check_item_fields(templates: Sequence[str], items: Sequence[Item]) -> None:
    """Every ``${item.*}`` of the template must resolve for every frozen item (SPEC 2)."""
    relevant = [
        t for t in templates if any(p.name.startswith("item.") for p in find_placeholders(t))
    ]
    if not relevant:
        return
    problems: list[str] = []
    for item in items:
        for template in relevant:
            for field in missing_item_fields(template, item.value):
                problems.append(
                    f"item {item.item_id!r} (index {item.index}) has no field {field!r}"
                )
        if len(problems) >= MAX_REPORTED_MISSING:
            break
    if problems:
        shown = "\n  ".join(dict.fromkeys(problems))
        raise InterpolationError(
            f"the agent template uses item fields that some items lack:\n  {shown}"
        )


def resolve_items(
    workflow: Workflow,
    *,
    job_id: str,
    base_dir: Path,
    base_env: Mapping[str, str],
    captures: Mapping[str, str],
) -> tuple[list[Item], str]:
    """Read the input and run the item pipeline; return the items and the input's hash."""
    spec = workflow.map
    scope = Scope(job_id=job_id, env=workflow.env, captures=captures)
    data = read_input(
        render_plain(spec.input, scope),
        base_dir=base_dir,
        env={**base_env, **captures},
        cwd=base_dir,
    )
    make_id = None
    if spec.id is not None:
        template = spec.id

        def make_id(value: Any, position: int) -> str:
            return render_plain(template, replace(scope, item=value, item_index=position))

    items = select_items(
        data,
        json_path=spec.json_path,
        filter=spec.filter,
        sort_by=spec.sort_by,
        distinct=spec.distinct,
        offset=spec.offset,
        max_items=spec.max_items,
        make_id=make_id,
    )
    check_item_fields(step_templates(spec.agent_template), items)
    return items, input_digest(data)


def input_file_identity(path: Path) -> dict[str, Any] | None:
    """Size, mtime and hash of an input file, to tell on resume whether it was edited."""
    try:
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}


def input_file_changed(identity: dict[str, Any]) -> bool:
    """Whether the input file recorded at freeze time differs now (missing counts)."""
    path = Path(identity["path"])
    try:
        stat = path.stat()
    except OSError:
        return True
    if stat.st_size == identity["size"] and stat.st_mtime_ns == identity["mtime_ns"]:
        return False
    current = input_file_identity(path)
    return current is None or current["sha256"] != identity["sha256"]


def freeze(ctx: JobContext) -> int:
    """Resolve the items and store them; the job enters the map phase. Returns the count."""
    source = render_plain(
        ctx.workflow.map.input,
        Scope(job_id=ctx.job_id, env=ctx.workflow.env, captures=ctx.store.job().captures),
    )
    candidate = ctx.base_dir / source
    if candidate.is_file():
        identity = input_file_identity(candidate)
        if identity is not None:
            ctx.store.set_options({"input_file": identity})
    items, digest = resolve_items(
        ctx.workflow,
        job_id=ctx.job_id,
        base_dir=ctx.base_dir,
        base_env=ctx.base_env,
        captures=ctx.store.job().captures,
    )
    ctx.store.freeze_items([(item.item_id, item.value) for item in items], input_sha256=digest)
    return len(items)
