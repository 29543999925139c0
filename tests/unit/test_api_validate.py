"""``validate_workflow``: a workflow checked and its items read as a run would, no job made."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import mapwise
from mapwise.errors import UserError, WorkflowError
from mapwise.types import ItemPreview, ValidationReport


def write(folder: Path, items: list[Any] | None = None, **spec: Any) -> Path:
    """``wf.yml`` (JSON is YAML) with one map step, plus ``items.json`` when given."""
    workflow: dict[str, Any] = {
        "name": "v",
        "map": {"input": "items.json", "agent_template": [{"shell": "true"}]},
    }
    for key, value in spec.items():
        if key in {"setup", "reduce", "merge"}:
            workflow[key] = value
        else:
            workflow["map"][key] = value
    if items is not None:
        (folder / "items.json").write_text(json.dumps(items))
    path = folder / "wf.yml"
    path.write_text(json.dumps(workflow))
    return path


def test_it_counts_the_items_after_the_pipeline_and_shows_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a workflow whose filter keeps seven of nine items
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, [{"n": n} for n in range(9)], filter="n > 1", id="item-${item.n}")

    # When it is validated with a preview of three
    report = mapwise.validate_workflow(path, preview=3)

    # Then the report has the shape, the count and the first three items, in frozen order
    assert isinstance(report, ValidationReport)
    assert (report.name, report.path) == ("v", path.resolve())
    assert (report.setup_steps, report.map_steps, report.reduce_steps) == (0, 1, 0)
    assert (report.items_after_setup, report.item_count) == (False, 7)
    assert report.preview == (
        ItemPreview(0, "item-2", {"n": 2}),
        ItemPreview(1, "item-3", {"n": 3}),
        ItemPreview(2, "item-4", {"n": 4}),
    )
    # And nothing was made: no state directory anywhere
    assert not (tmp_path / ".mapwise").exists()


def test_the_report_is_a_frozen_value(tmp_path: Path) -> None:
    report = mapwise.validate_workflow(write(tmp_path, [1]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.item_count = 2  # type: ignore[misc]


def test_items_made_by_setup_are_read_after_setup(tmp_path: Path) -> None:
    # Given a setup that writes the input, which does not exist yet
    path = write(tmp_path, None, setup=[{"shell": "echo '[1]' > items.json"}])

    report = mapwise.validate_workflow(path)

    # Then the items are not read (setup is not run by validate)
    assert report.items_after_setup is True
    assert (report.item_count, report.preview) == (None, ())
    assert report.input == "items.json"
    assert not (tmp_path / "items.json").exists()


def test_ignored_keys_come_back_as_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, [1], merge={"commands": [{"shell": "true"}]})
    report = mapwise.validate_workflow(path)
    assert any("merge" in warning for warning in report.warnings), report.warnings


def test_an_invalid_workflow_raises_a_workflow_error(tmp_path: Path) -> None:
    path = write(tmp_path, [1], max_parallel=0)
    with pytest.raises(WorkflowError) as caught:
        mapwise.validate_workflow(path)
    assert caught.value.exit_code == 2


def test_an_item_field_no_item_has_is_refused(tmp_path: Path) -> None:
    # Given an id template naming a field the items lack: a run would refuse to freeze them
    path = write(tmp_path, [{"n": 1}], id="${item.missing}")
    with pytest.raises(UserError):
        mapwise.validate_workflow(path)
