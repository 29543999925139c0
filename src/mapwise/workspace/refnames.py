"""Branch names of a worktree job, made from item ids that may hold anything (pure).

All of a job's branches live under ``mapwise/<job_id>/``: the job's ``.../result`` and one
``.../item/<name>`` per item. An item id can be any text (``../x``, ``a..b``, ``@{``,
spaces, emoji, 300 characters), so it is reduced to one safe ref component, and the few
ids that reduce to the same name are told apart by their item index.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

__all__ = ["item_branches", "job_branch", "ref_safe"]

FALLBACK = "item"  # the name of an id with nothing ref-safe in it

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")


def _tidy(name: str) -> str:
    """Fix the ends of a name until git accepts it as one component."""
    while True:
        before = name
        name = name.lstrip(".-").rstrip(".")
        if name.endswith(".lock"):
            name = name[: -len(".lock")] + "-lock"
        if name == before:
            return name


def ref_safe(item_id: str, max_len: int = 100) -> str:
    """``item_id`` as one component of a branch name, at most ``max_len`` characters.

    Only ``[A-Za-z0-9._-]`` is kept (every run of other characters becomes one ``-``), so
    no ``/``, ``@{``, space or control character can reach git; ``..`` becomes ``.``, and
    the ends are tidied (no leading ``.`` or ``-``, no trailing ``.`` or ``.lock``).
    Readable where the id was, and never empty.
    """
    name = _tidy(_DOTS.sub(".", _UNSAFE.sub("-", item_id)))
    name = _tidy(name[: max(1, max_len)])
    return name or FALLBACK[: max(1, max_len)]


def job_branch(job_id: str) -> str:
    """The branch holding the job's result, where every item is merged."""
    return f"mapwise/{job_id}/result"


def item_branches(job_id: str, items: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Each item's branch, by item index: ``mapwise/<job_id>/item/<ref_safe(id)>``.

    Names that collide get ``-<index>`` appended (every one of them, so the result does
    not depend on the order of ``items``). Collisions are judged ignoring case, because on
    a case-insensitive file system ``A`` and ``a`` are one loose ref file. A name with an
    index cannot equal another such name (the index after the last ``-`` differs), so the
    loop below only ever adds indexes to plain names, and ends.
    """
    pairs = list(items)
    base = {index: ref_safe(item_id) for index, item_id in pairs}
    counts = Counter(name.lower() for name in base.values())
    names = {i: _indexed(n, i) if counts[n.lower()] > 1 else n for i, n in base.items()}
    suffixed = {i for i, n in base.items() if counts[n.lower()] > 1}
    while True:
        counts = Counter(name.lower() for name in names.values())
        clashing = [i for i, n in names.items() if counts[n.lower()] > 1 and i not in suffixed]
        if not clashing:
            break
        for index in clashing:
            names[index] = _indexed(base[index], index)
            suffixed.add(index)
    prefix = f"mapwise/{job_id}/item/"
    return {index: prefix + names[index] for index, _ in pairs}


def _indexed(name: str, index: int) -> str:
    """``name-<index>``, the name shortened so the whole stays within ``ref_safe``'s length."""
    suffix = f"-{index}"
    return (_tidy(name[: max(1, 100 - len(suffix))]) or FALLBACK) + suffix
