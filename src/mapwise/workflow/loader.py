"""Loading a workflow file: read, parse, normalise prodigy's spellings, validate, check.

Each stage raises or collects ``Problem``s (message, file path, key); this module is the
one place that turns them into ``WorkflowError`` naming the file and the line, so a
user sees ``wf.yml:12: map.max_parallel: must be at least 1`` and exit code 2, never a
traceback. Warnings (ignored prodigy keys, a capture hiding an env variable) come back
on the ``LoadedWorkflow`` and never fail loading.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mapwise.errors import WorkflowError
from mapwise.workflow.checks import check_workflow
from mapwise.workflow.locate import Locator, Problem, Problems, describe, parse_yaml
from mapwise.workflow.model import Workflow
from mapwise.workflow.prodigy import normalise
from mapwise.workflow.prompt_checks import check_prompts
from mapwise.workflow.validate import validate

MAX_REPORTED: Final = 20  # errors listed in one message; the rest are counted


@dataclass(frozen=True)
class LoadedWorkflow:
    """A validated workflow and where it came from."""

    workflow: Workflow
    path: Path  # absolute path of the file
    source: str  # the file's text as read
    sha256: str  # hex digest of the source bytes
    warnings: tuple[str, ...]  # "wf.yml:12: merge: prodigy key not supported by mapwise; ignored"

    @property
    def base_dir(self) -> Path:
        """The workflow file's folder: relative input paths are relative to it."""
        return self.path.parent


def load_workflow(path: str | Path) -> LoadedWorkflow:
    """Read and validate the workflow file at ``path``; raise ``WorkflowError`` if invalid."""
    shown = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise WorkflowError(f"cannot read the workflow file: {reason}", path=shown) from None
    text = _decode(data, shown)
    try:
        return _load(text, hashlib.sha256(data).hexdigest(), path)
    except RecursionError:
        raise WorkflowError("the workflow is nested too deeply to read", path=shown) from None


def parse_workflow(text: str, *, path: str | Path) -> LoadedWorkflow:
    """Validate workflow ``text`` as if read from ``path`` (used in messages and base_dir)."""
    return _load(text, hashlib.sha256(text.encode("utf-8")).hexdigest(), path)


def _decode(data: bytes, shown: str) -> str:
    """The file as text: UTF-8 (a leading BOM is allowed), or an error naming the line."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise WorkflowError(
            f"not UTF-8 text (byte 0x{byte:02x} at offset {exc.start})", path=shown, line=line
        ) from None


def _load(text: str, digest: str, path: str | Path) -> LoadedWorkflow:
    shown = str(path)
    try:
        workflow, warnings = _build(text)
    except Problem as problem:
        raise _error([problem], shown) from None
    except Problems as problems:
        raise _error(problems.problems, shown) from None
    absolute = Path(os.path.abspath(path))
    return LoadedWorkflow(workflow, absolute, text, digest, tuple(_lines(warnings, shown)))


def _build(text: str) -> tuple[Workflow, list[Problem]]:
    """The stages, in order; raise ``Problem``/``Problems`` at the first failing stage."""
    doc, lines = parse_yaml(text)
    if doc is None:
        raise Problem("the workflow file is empty", line=1)
    if not isinstance(doc, dict):
        raise Problem(
            f"a workflow must be a mapping of keys (name, map, ...), got {describe(doc)}",
            line=lines.line_of(()),
        )
    locator = Locator(lines)
    try:
        normalised = normalise(doc, locator)
    except Problem as problem:  # raised with a file path; find its line
        line = problem.line if problem.line is not None else lines.line_of(problem.loc)
        raise dataclasses.replace(problem, line=line) from None
    workflow = validate(normalised.data, locator)
    errors, doubts = check_workflow(workflow, locator, normalised.profile_vars)
    prompt_errors, prompt_doubts = check_prompts(workflow, locator)
    errors += prompt_errors
    doubts += prompt_doubts
    if errors:
        raise Problems(errors)
    warnings = [Problem(w.message, key=w.key or None, line=w.line) for w in normalised.warnings]
    return workflow, warnings + doubts


def _error(problems: list[Problem], shown: str) -> WorkflowError:
    """One ``WorkflowError`` for all problems, sorted by line, the first one leading."""
    ordered = sorted(problems, key=_sort_key) or [Problem("invalid workflow")]
    first, rest = ordered[0], ordered[1:]
    extra = [f"\n{text}" for text in _lines(rest[: MAX_REPORTED - 1], shown)]
    if len(rest) >= MAX_REPORTED:
        extra.append(f"\n... and {len(rest) - MAX_REPORTED + 1} more")
    return WorkflowError(
        first.message + "".join(extra),
        path=shown,
        line=first.line,
        key=first.key,
        column=first.column,
    )


def _sort_key(problem: Problem) -> int:
    return problem.line if problem.line is not None else 0


def _lines(problems: list[Problem], shown: str) -> list[str]:
    """``file:line: key: message`` for each problem, in order."""
    texts = []
    for problem in sorted(problems, key=_sort_key):
        where = shown if problem.line is None else f"{shown}:{problem.line}"
        if problem.line is not None and problem.column is not None:
            where += f":{problem.column}"
        key = f"{problem.key}: " if problem.key else ""
        texts.append(f"{where}: {key}{problem.message}")
    return texts
