"""What a step's ``capture:`` keeps, in prodigy's capture formats, and ``${shell.output}``.

prodigy's ``capture_format`` (``src/cook/workflow/variables.rs``, ``capture_command_result``):
``string`` keeps the output's text; ``json`` parses it (a step whose output is not JSON
fails); ``lines`` is the array of its lines; ``number`` parses the trimmed text as a
number (else the step fails); ``boolean`` is the trimmed text when it reads ``true`` or
``false``, else whether the command succeeded. Captures are kept as text (JSON text for
``json`` and ``lines``), so a resume carries them like any other, and ``${name.field}``
reads a field of the JSON (``mapwise.placeholders``).

``${shell.output}`` and ``${shell.stderr}`` are the output of the step that just ran (its
stdout, and the tail of its stderr), seen by the next step and by the step's own
``on_failure`` handlers, as prodigy sets them after each step. Keeping every step's
stdout costs a little, so it is kept only in step lists that mention them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from mapwise.workflow.model import Step

STEP_OUTPUT = "shell.output"
STEP_STDERR = "shell.stderr"

_mentions: dict[int, tuple[Sequence[Step], bool]] = {}


def mentions_step_output(steps: Sequence[Step]) -> bool:
    """Whether any text of ``steps`` (handlers included) reads ``${shell.output}`` or
    ``${shell.stderr}``; remembered per list, which lives as long as its run."""
    known = _mentions.get(id(steps))
    if known is not None and known[0] is steps:
        return known[1]
    found = any("shell.output" in t or "shell.stderr" in t for s in steps for t in s.templates())
    _mentions[id(steps)] = (steps, found)
    return found


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def captured(step_format: str, stdout: str, succeeded: bool) -> tuple[str | None, str | None]:
    """The value a capture keeps, or ``(None, why)`` when the output does not fit its
    format."""
    text = stdout.rstrip("\n")
    if step_format == "json":
        try:
            return json.dumps(json.loads(text or "null"), ensure_ascii=False), None
        except (ValueError, RecursionError) as exc:
            return None, f"capture_format json: the output is not JSON ({exc})"
    if step_format == "lines":
        return json.dumps(stdout.splitlines(), ensure_ascii=False), None
    if step_format == "number":
        try:
            number = float(text.strip() or "0")
        except ValueError:
            return None, f"capture_format number: {text.strip()[:80]!r} is not a number"
        if number != number or number in (float("inf"), float("-inf")):
            return None, f"capture_format number: {text.strip()[:80]!r} is not a number"
        return _number(number), None
    if step_format == "boolean":
        word = text.strip()
        return (word if word in ("true", "false") else str(succeeded).lower()), None
    return text, None
