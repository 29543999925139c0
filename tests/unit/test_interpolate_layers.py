"""``mapwise.interpolate`` and the shell binder share ``mapwise.placeholders`` and do not
import each other's way round: the binder loads without the plain renderer, and the
public names stay where users import them."""

from __future__ import annotations

import json
import subprocess
import sys

import mapwise.interpolate as interpolate
import mapwise.interpolate_shell as interpolate_shell
import mapwise.placeholders as placeholders


def _modules_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name for name in json.loads(out.stdout) if name.startswith("mapwise.")}


def test_the_shell_binder_loads_without_interpolate() -> None:
    loaded = _modules_after_import("mapwise.interpolate_shell")
    assert "mapwise.placeholders" in loaded
    assert "mapwise.interpolate" not in loaded


def test_placeholders_need_neither_way_of_substituting() -> None:
    loaded = _modules_after_import("mapwise.placeholders")
    assert not loaded & {"mapwise.interpolate", "mapwise.interpolate_shell"}


def test_the_public_names_are_the_shared_ones() -> None:
    assert interpolate.Scope is placeholders.Scope
    assert interpolate.find_placeholders is placeholders.find_placeholders
    assert interpolate.BoundShell is interpolate_shell.BoundShell
    bound = interpolate.bind_shell("echo ${item.x}", interpolate.Scope("j", item={"x": "a b"}))
    assert bound == interpolate.BoundShell('echo "${MAPWISE_V0}"', {"MAPWISE_V0": "a b"})
