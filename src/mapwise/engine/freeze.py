"""Resolving the work items after setup and freezing them into the job.

The input is read once, after setup (setup often writes it); the resolved list is stored
with a hash, and every later run uses the frozen copy.

:func:`freeze` streams the items into the job: the input is parsed a value at a time
where it can be (:mod:`mapwise.items.source`), the pipeline is lazy, each item's fields
are checked as it passes, and the store writes each row as it comes, so a million items
never sit in memory together. Errors are another matter: every empty or duplicated id is
listed, id errors come before missing fields, and so on. So as soon as the streamed
freeze meets an error of the items, it is rolled back and the items are resolved again
as one list (:func:`resolve_items`, which ``mapwise validate`` runs too), which raises
the complete error, the same one ``validate`` shows.

Before either, the usual freeze (a JSON array of items taken as they are, ids their
positions) is tried at C speed (:func:`_freeze_chunked`): ``json.loads`` a chunk of the
array at a time and SQLite's ``json_each`` writing the rows, checked against the
streamed freeze's rows as they are written. Anything it cannot do the same way, it
leaves, with nothing stored, to the streamed freeze.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mapwise.engine.context import JobContext
from mapwise.errors import InterpolationError
from mapwise.executors.orphans import clear_note, make_note, write_note
from mapwise.interpolate import Scope, find_placeholders, missing_item_fields, render_plain
from mapwise.items import (
    InputText,
    Item,
    input_digest,
    iter_ids,
    iter_selected,
    open_source,
    parse_input,
    read_input_text,
    select_items,
)
from mapwise.items.chunked import HashedChunks, NotChunked
from mapwise.items.pipeline import member_names
from mapwise.store.itemrows import DuplicateItemIdError, NotBulkError
from mapwise.store.jobstore import JobStore
from mapwise.workflow.model import MapPhase, Step, Workflow

log = logging.getLogger(__name__)

MAX_REPORTED_MISSING = 10


def step_templates(steps: Iterable[Step]) -> list[str]:
    """Every interpolated text of ``steps`` and their on_failure steps."""
    return [text for step in steps for text in step.templates()]


def item_templates(templates: Iterable[str]) -> list[str]:
    """The templates that read item fields (``${item.*}``)."""
    return [t for t in templates if any(p.name.startswith("item.") for p in find_placeholders(t))]


def check_item_fields(templates: Sequence[str], items: Sequence[Item]) -> None:
    """Every ``${item.*}`` of the template must resolve for every frozen item: a missing
    field is an error of the input at freeze time, never a surprise in the middle of the map."""
    relevant = item_templates(templates)
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


@dataclass(frozen=True)
class _Plan:
    """How the workflow turns its input into items: what both ways of resolving share."""

    spec: MapPhase
    scope: Scope  # the job's variables and captures (no item)
    make_id: Callable[[Any, int], str] | None
    templates: list[str]  # the agent template's texts


def _plan(workflow: Workflow, job_id: str, captures: Mapping[str, str]) -> _Plan:
    spec = workflow.map
    scope = Scope(job_id=job_id, env=workflow.env, captures=captures)
    make_id = None
    if spec.id is not None:
        template = spec.id

        def make_id(value: Any, position: int) -> str:
            # a Scope built whole: dataclasses.replace costs 8 µs, a million times
            item_scope = Scope(
                job_id=job_id, env=workflow.env, captures=captures, item=value, item_index=position
            )
            return render_plain(template, item_scope)

    steps = spec.agent_template + workflow.workspace.setup  # both see ${item.*}
    return _Plan(spec, scope, make_id, step_templates(steps))


INPUT_SLOT = "input"  # the slot note of the input command's process group


def _read(
    plan: _Plan,
    base_dir: Path,
    base_env: Mapping[str, str],
    *,
    cancel: threading.Event | None = None,
    slots: Path | None = None,
) -> InputText:
    """Read the input; with ``slots``, the input command's group is noted there while it
    runs (a second Ctrl-C kills the noted groups), and ``cancel`` stops it."""

    def note(pgid: int) -> None:
        if slots is not None:
            write_note(slots, make_note(INPUT_SLOT, pgid))

    try:
        return read_input_text(
            render_plain(plan.spec.input, plan.scope),
            base_dir=base_dir,
            env={**base_env, **plan.scope.captures},
            cwd=base_dir,
            cancel=cancel,
            on_start=note,
        )
    finally:
        if slots is not None:
            clear_note(slots, INPUT_SLOT)


def resolve_items(
    workflow: Workflow,
    *,
    job_id: str,
    base_dir: Path,
    base_env: Mapping[str, str],
    captures: Mapping[str, str],
) -> tuple[list[Item], str]:
    """Read the input and run the item pipeline; return the items and the input's hash."""
    plan = _plan(workflow, job_id, captures)
    return _resolve(plan, _read(plan, base_dir, base_env))


def _resolve(plan: _Plan, raw: InputText) -> tuple[list[Item], str]:
    """The items as one checked list: every error of theirs, as users have always seen it."""
    spec = plan.spec
    data = parse_input(raw)
    items = select_items(
        data,
        json_path=spec.json_path,
        filter=spec.filter,
        sort_by=spec.sort_by,
        distinct=spec.distinct,
        offset=spec.offset,
        max_items=spec.max_items,
        make_id=plan.make_id,
    )
    check_item_fields(plan.templates, items)
    return items, input_digest(data)


class _Irregular(Exception):
    """The streamed freeze met an error of the items; :func:`_resolve` will say which."""


def _freeze_streamed(store: JobStore, plan: _Plan, raw: InputText) -> int:
    """Freeze the items as they are read; return their count.

    Raises _Irregular, with nothing stored, for anything wrong with the items: an error
    reading or selecting them, an empty or duplicated id, a missing item field.
    """
    spec = plan.spec
    try:
        source = open_source(raw, spec.json_path)
        selected = iter_selected(
            source.values,
            filter=spec.filter,
            sort_by=spec.sort_by,
            distinct=spec.distinct,
            offset=spec.offset,
            max_items=spec.max_items,
        )
    except Exception as exc:
        raise _Irregular from exc
    fields = item_templates(plan.templates)
    total = 0

    def rows() -> Iterator[tuple[str, Any]]:
        nonlocal total
        try:
            for item_id, value in iter_ids(selected, plan.make_id):
                if not item_id or (fields and any(missing_item_fields(t, value) for t in fields)):
                    raise _Irregular
                total += 1
                yield item_id, value
        except _Irregular:
            raise
        except Exception as exc:
            raise _Irregular from exc

    try:
        store.freeze_items(rows(), input_sha256=source.digest)
    except DuplicateItemIdError as exc:
        raise _Irregular from exc
    return total


def _freeze_chunked(store: JobStore, plan: _Plan, raw: InputText) -> int | None:
    """The usual freeze, at C speed: the input is one JSON array whose elements are the
    items, as they are (no filter, sort_by, distinct, offset or max_items), with ids their
    positions and no ``${item.*}`` to check. Returns the count, or None with nothing
    stored if the freeze is not that one or the input is not such an array.

    ``json.loads`` parses the array a chunk at a time (:mod:`mapwise.items.chunked`)
    and SQLite writes a chunk's rows from its JSON (``itemrows.insert_item_chunks``):
    the rows and digests :func:`_freeze_streamed` stores, or None.
    """
    spec = plan.spec
    names = [] if spec.json_path is None else member_names(spec.json_path)
    selects = (spec.filter, spec.sort_by, spec.distinct, spec.max_items, plan.make_id)
    if names != [] or spec.offset or any(x is not None for x in selects):
        return None
    if item_templates(plan.templates):
        return None
    chunks = HashedChunks(raw.text)
    try:
        store.freeze_item_chunks(chunks, input_sha256=chunks.digest)
    except (NotChunked, NotBulkError, ValueError, RecursionError) as exc:
        log.debug("chunked freeze stopped (%r); streaming the items", exc)
        return None
    return chunks.count


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
    """Resolve the items and store them; the job enters the map phase. Returns the count.

    In worktree mode the input is read in the job's worktree (where setup wrote it); an
    input file that is only beside the workflow file (not committed) is read there.
    """
    return freeze_into(
        ctx.store,
        ctx.workflow,
        job_id=ctx.job_id,
        base_dir=_input_dir(ctx),
        base_env=ctx.base_env,
        cancel=ctx.stop.requested,
        slots=ctx.paths.slots,
    )


def _input_dir(ctx: JobContext) -> Path:
    if ctx.source_dir is None:
        return ctx.base_dir
    scope = _plan(ctx.workflow, ctx.job_id, ctx.store.job().captures).scope
    name = render_plain(ctx.workflow.map.input, scope)
    if not (ctx.base_dir / name).is_file() and (ctx.source_dir / name).is_file():
        return ctx.source_dir
    return ctx.base_dir


def freeze_into(
    store: JobStore,
    workflow: Workflow,
    *,
    job_id: str,
    base_dir: Path,
    base_env: Mapping[str, str],
    cancel: threading.Event | None = None,
    slots: Path | None = None,
) -> int:
    """:func:`freeze`, given what it uses of the run (an InputStopped if ``cancel`` stops
    the input command: nothing is frozen then)."""
    plan = _plan(workflow, job_id, store.job().captures)
    candidate = base_dir / render_plain(workflow.map.input, plan.scope)
    if candidate.is_file():
        identity = input_file_identity(candidate)
        if identity is not None:
            store.set_options({"input_file": identity})
    raw = _read(plan, base_dir, base_env, cancel=cancel, slots=slots)
    count = _freeze_chunked(store, plan, raw)
    if count is not None:
        return count
    try:
        return _freeze_streamed(store, plan, raw)
    except _Irregular as exc:
        log.debug("streamed freeze stopped (%r); resolving the items as a list", exc.__cause__)
    items, digest = _resolve(plan, raw)
    # reached only if the list finds nothing wrong where the stream did: store the list
    store.freeze_items(((item.item_id, item.value) for item in items), input_sha256=digest)
    return len(items)
