"""Workflow ``env:`` values that name other variables, expanded as a shell would.

``env: {PATH: "/custom/bin:${PATH}", DERIVED: "${BASE}/data", TOKEN: "${GITHUB_TOKEN}"}``:
in each value, ``${NAME}``, ``$NAME`` and ``${env.NAME}`` become the value of ``NAME``
from an *earlier* entry of the same ``env:`` (in file order), else from the process
environment. So ``PATH: "/custom/bin:${PATH}"`` extends the process's ``PATH``, like
``PATH=/custom/bin:$PATH`` in a shell. A name set nowhere becomes the empty string, as in
a shell; ``mapwise validate`` (and a run's load) warns, naming it. Anything else
(``$$``, ``$1``, ``${NAME:-x}``, ``${item.x}``) is left as written.

Prodigy does the same textual substitution of earlier variables and ``${env.NAME}``
(``EnvironmentManager::interpolate_value``) and resolves ``max_parallel: ${VAR}`` from the
workflow env, then the process environment (``resolve_env_or_parse``).

The expansion is done once where a run starts (``mapwise.engine.runner.execute``), each
run of a job again: a resume on another machine expands against that machine's
environment. The expanded values are what commands get as environment variables and what
``${NAME}`` interpolates to. Values never become shell code: they travel as environment
variables (see ``mapwise.interpolate_shell``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["Expanded", "env_references", "expand_env", "lookup"]

_REF: Final = re.compile(
    r"\$\$"  # kept as written
    r"|\$\{(?:env\.)?(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


@dataclass(frozen=True)
class Expanded:
    """The expanded env, and each ``(key, NAME)`` whose ``NAME`` was set nowhere."""

    env: dict[str, str]
    unset: tuple[tuple[str, str], ...] = ()


def env_references(value: str) -> list[str]:
    """The variable names a value refers to, in order."""
    names = []
    for match in _REF.finditer(value):
        name = match.group("braced") or match.group("bare")
        if name:
            names.append(name)
    return names


def expand_env(env: Mapping[str, str], environ: Mapping[str, str]) -> Expanded:
    """Each value of ``env`` (in order) with its references to earlier values and to
    ``environ`` substituted; a name set in neither becomes ``""``."""
    done: dict[str, str] = {}
    unset: list[tuple[str, str]] = []
    for key, value in env.items():

        def substitute(match: re.Match[str], key: str = key) -> str:
            name = match.group("braced") or match.group("bare")
            if not name:
                return match.group(0)
            found = lookup(name, done, environ)
            if found is None:
                unset.append((key, name))
                return ""
            return found

        done[key] = _REF.sub(substitute, value)
    return Expanded(done, tuple(unset))


def lookup(name: str, env: Mapping[str, str], environ: Mapping[str, str]) -> str | None:
    """``NAME`` from the workflow env first, then the process environment; None if unset."""
    if name in env:
        return env[name]
    return environ.get(name)
