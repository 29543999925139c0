"""``${shell.output}``, ``${shell.stderr}`` and capture formats in real runs (issue 13).

A prodigy workflow's handler reads the failed step's output as ``${shell.output}``; a
step reads the one before it the same way; a JSON capture's fields are ``${meta.a}``.
"""

from __future__ import annotations

import os

from helpers.project import Project, mapreduce

TEMPLATE = [
    {
        "shell": "echo out-${item.n}; echo err-${item.n} >&2; exit ${item.code}",
        "on_failure": [
            {"shell": 'echo "handler saw: ${shell.output} / ${shell.stderr}" > handled-${item.n}'}
        ],
    },
    {
        "shell": """echo '{"a": ${item.n}, "items": [{"x": "deep-${item.n}"}]}'""",
        "capture": "meta",
        "capture_format": "json",
    },
    'echo "prev=${shell.output} a=${meta.a} x=${meta.items[0].x}" > out-${item.n}',
    {"shell": "printf 'l1\\nl2\\n'", "capture": "info.lines", "capture_format": "lines"},
    {"shell": "echo 7", "capture": "count", "capture_format": "number"},
    'echo "${info.lines} ${count}" > more-${item.n}',
]


def test_step_output_reaches_the_next_step_and_the_failed_steps_handler(
    project: Project,
) -> None:
    # Given a template whose handler reads ${shell.output} and ${shell.stderr}, and steps
    # that read the step before and fields of JSON and lines captures
    project.workflow(
        mapreduce(TEMPLATE, id="i${item.n}"),
        items=[{"n": 1, "code": 0}, {"n": 2, "code": 3}],
    )

    # When it runs
    result = project.run()

    # Then the failed step's handler saw its output and stderr
    assert (result.succeeded, result.dlq) == (1, 1)
    assert project.read("handled-2").strip() == "handler saw: out-2 / err-2"
    # And the steps after saw the step before, and the captures' fields
    assert project.read("out-1").strip() == (
        'prev={"a": 1, "items": [{"x": "deep-1"}]} a=1 x=deep-1'
    )
    assert project.read("more-1").strip() == '["l1", "l2"] 7'


def test_output_that_is_not_json_fails_its_step_with_error_kind_capture(
    project: Project,
) -> None:
    # Given a step that says its output is JSON, and prints text
    project.workflow(
        mapreduce([{"shell": "echo not json", "capture": "meta", "capture_format": "json"}]),
        items=["a"],
    )

    # When it runs
    result = project.run()

    # Then the item failed, and says why
    assert result.dlq == 1
    entry = project.inspect("dlq", "list", result.job_id, "--json").json()[0]
    assert entry["error_kind"] == "capture"
    assert "not JSON" in project.inspect("dlq", "show", result.job_id, entry["item_id"]).stdout


def test_a_steps_own_env_reads_the_process_environment_and_its_earlier_entries(
    project: Project,
) -> None:
    # Given a step whose env extends PATH and builds on its own earlier entry
    step = {
        "shell": 'echo "$P|$Q" > env-out',
        "env": {"P": "/custom/bin:${PATH}", "Q": "${P}-again-${item}"},
    }
    project.workflow(mapreduce([step]), items=["a"])

    # When it runs
    result = project.run()

    # Then both expanded as a shell would
    assert result.succeeded == 1
    p, q = project.read("env-out").strip().split("|")
    assert p.startswith("/custom/bin:") and p.endswith(os.environ["PATH"])
    assert q == f"{p}-again-a"


def test_a_failed_agent_steps_handler_sees_the_agents_error_as_shell_output(
    project: Project,
) -> None:
    # Given an agent step that runs out of turns, whose handler reads ${shell.output}
    step = {
        "claude": "fix it [fake:result=error_max_turns]",
        "on_failure": [{"shell": 'echo "debug: ${shell.output}" > debug-out'}],
    }
    project.workflow(mapreduce([step]), items=["a"])

    # When it runs
    result = project.run()

    # Then the item failed, and its handler saw the agent's own words for why
    assert result.dlq == 1
    assert "error_max_turns" in project.read("debug-out")
