"""Freezing the items into a job: the streamed freeze must store exactly what resolving
the items as one list stores (rows, ids, digests), and fail exactly as it fails."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.freezing import frozen, listed, write_workflow

FIXTURES = Path(__file__).parent.parent / "fixtures"
RECORDS = [{"name": f"n{i % 7}", "score": i % 5, "tag": None if i % 3 else "x"} for i in range(40)]


@pytest.mark.parametrize(
    ("items_text", "options", "template"),
    [
        (json.dumps(RECORDS), {}, "true"),
        (json.dumps(RECORDS, indent=2), {"json_path": "$[*]"}, "echo ${item.name}"),
        (
            json.dumps(RECORDS),
            {"filter": "score > 1", "sort_by": "name DESC, score", "distinct": "name"},
            "true",
        ),
        (
            json.dumps(RECORDS),
            {"offset": 3, "max_items": 5, "id": "${item.name}-${item_index}"},
            "true",
        ),
        (json.dumps({"items": RECORDS}), {"json_path": "$.items[*]"}, "true"),
        (json.dumps({"items": RECORDS}), {"json_path": "$.items", "max_items": 0}, "true"),
        (json.dumps({"items": RECORDS}), {"json_path": "$..score"}, "true"),
        ("\n".join(json.dumps(r) for r in RECORDS), {"input": "items.jsonl"}, "true"),
        ("a.py\n\nb c.py\r\n", {"input": "items.txt"}, "echo ${item}"),
        ("unused", {"input": "printf '[1, 2]\\n3'"}, "true"),
        ("unused", {"input": "printf '[1, 2]'", "sort_by": "item DESC"}, "true"),
        ('["caf\\u00e9", "\\u2603", 1.5e300, -0.0]', {}, "true"),
        # errors: every one must be the error the list resolution raises
        (json.dumps(RECORDS), {"id": "${item.name}"}, "true"),
        (json.dumps(RECORDS), {"id": "${item.tag}"}, "true"),
        (json.dumps([*RECORDS[:3], {"name": ""}]), {"id": "${item.name}"}, "true"),
        (json.dumps(RECORDS), {"id": "${item.nothing}"}, "true"),
        (json.dumps(RECORDS[:5] + [{"x": 1}] * 20), {}, "echo ${item.name} ${item.score}"),
        (json.dumps(RECORDS[:5] + [{"x": 1}] * 20), {"id": "${item.x}"}, "echo ${item.name}"),
        ('[{"a": 1}, {"a": }]', {}, "true"),
        ('[{"a": 1}] [2]', {}, "true"),
        (json.dumps({"items": RECORDS}), {"json_path": "$.nothing"}, "true"),
        ('["\\ud800"]', {}, "true"),
        ("", {"input": "true"}, "true"),
    ],
)
def test_streamed_freeze_stores_or_refuses_what_the_list_does(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    items_text: str,
    options: dict[str, Any],
    template: str,
) -> None:
    # Given an input and a workflow's item options
    (tmp_path / options.get("input", "items.json")).write_text(items_text)
    workflow = write_workflow(tmp_path, template, **options)
    # When the items are frozen
    with caplog.at_level(logging.DEBUG, logger="mapwise.engine.freeze"):
        result = frozen(tmp_path, workflow)
    # Then: the same rows and digests, or the same error, as the list resolution
    assert result == listed(tmp_path, workflow)
    # and valid items were streamed, not resolved again as a list
    fell_back = any("streamed freeze stopped" in r.message for r in caplog.records)
    assert fell_back == (result[0] == "error" and "produced no items" not in result[2])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    records=st.lists(
        st.fixed_dictionaries(
            {"k": st.integers(0, 4) | st.none() | st.sampled_from(["a", ""])},
            optional={"v": st.floats() | st.text(max_size=3)},
        ),
        max_size=30,
    ),
    options=st.fixed_dictionaries(
        {},
        optional={
            "filter": st.sampled_from(["k > 1", "is_not_null(v)"]),
            "sort_by": st.sampled_from(["k", "v DESC NULLS FIRST, k"]),
            "distinct": st.sampled_from(["k", "v"]),
            "offset": st.integers(0, 5),
            "max_items": st.integers(0, 5),
            "id": st.sampled_from(["${item.k}", "k${item_index}", "${item.v}"]),
        },
    ),
    template=st.sampled_from(["true", "echo ${item.v}"]),
)
def test_streamed_freeze_equals_the_list_for_any_options(
    tmp_path: Path, records: list[dict[str, Any]], options: dict[str, Any], template: str
) -> None:
    (tmp_path / "items.json").write_text(json.dumps(records))
    workflow = write_workflow(tmp_path, template, **options)
    assert frozen(tmp_path, workflow) == listed(tmp_path, workflow)


def test_the_version_1_jobs_digests_are_computed_the_same(tmp_path: Path) -> None:
    # Given the workflow and items of the job version 1 froze
    shutil.copytree(FIXTURES / "v1", tmp_path / "v1")
    folder = tmp_path / "v1"
    conn = sqlite3.connect(f"file:{folder / 'state.db'}?mode=ro", uri=True)
    stored = conn.execute("SELECT items_sha256, input_sha256 FROM job").fetchone()
    conn.close()
    # When they are frozen again today
    result = frozen(folder, folder / "workflow.yml")
    # Then: the same item digest and input digest as version 1 recorded
    assert result[0] == "ok"
    assert (result[2], result[3]) == stored
