"""The map phase's semantics, run for real: the parallelism bound, dispatch order, where
items come from (files, commands, JSON lines, plain lines), the item pipeline, id
templates, the checks that refuse a job before any item runs, and what each command sees
(variables, captures, the item file, agent prompts, write_file, hostile data as data).
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mapwise
from helpers.jobdb import JobDb
from helpers.project import Project, mapreduce
from mapwise.cli.exit_codes import exit_code_for
from mapwise.errors import InputError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells and groups")


# -- the parallelism bound -------------------------------------------------------------

# Each item marks itself running, records how many are running at its start and after its
# sleep, then unmarks itself before it exits.
CONCURRENCY = (
    'touch "running/${item_id}"; ls running | wc -l >> "counts/${item_id}"; sleep 0.2; '
    'ls running | wc -l >> "counts/${item_id}"; rm "running/${item_id}"'
)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


@given(intervals=st.lists(st.tuples(st.floats(0, 10), st.floats(0, 10)), max_size=20))
@settings(max_examples=100, deadline=None)
def test_max_overlap_is_the_most_intervals_open_at_any_start(
    intervals: list[tuple[float, float]],
) -> None:
    # The helper the bound test relies on equals a brute-force count over half-open
    # intervals, taken at every start (where the count can rise)
    ordered = [(min(a, b), max(a, b)) for a, b in intervals]
    brute = max((sum(1 for s, e in ordered if s <= x < e) for x, _ in ordered), default=0)
    assert _max_overlap(ordered) == brute


@pytest.mark.parametrize(("in_workflow", "override", "bound"), [("${P}", None, 3), (5, 2, 2)])
def test_no_more_than_max_parallel_items_run_at_once(
    project: Project, in_workflow: int | str, override: int | None, bound: int
) -> None:
    # Given twelve items that each take 0.2 s and record how many run beside them, and
    # max_parallel given as "${P}" (P=3 in the workflow env) or as a number
    (project.root / "running").mkdir()
    (project.root / "counts").mkdir()
    workflow = mapreduce([CONCURRENCY], max_parallel=in_workflow, env={"P": "3"})
    project.workflow(workflow, items=list(range(12)))

    # When it runs (with --max-parallel overriding the workflow's value, if given)
    result = project.run(max_parallel=override)

    # Then all succeeded, and the number running never exceeded the bound but reached it
    assert (result.succeeded, exit_code_for(result.outcome)) == (12, 0)
    seen = [int(n) for text in project.files("counts").values() for n in text.split()]
    assert len(seen) == 24
    assert max(seen) == bound
    # And the database agrees: slots stay within the pool and attempts overlap at most so
    db = project.db(result.job_id)
    attempts = db.attempts()
    assert {a["slot"] for a in attempts} <= set(range(bound))
    assert _max_overlap([(a["started_at"], a["ended_at"]) for a in attempts]) <= bound


# -- where items come from -------------------------------------------------------------

RECORD_ITEM = 'printf "%s" "${item}" > "out/${item_index}"'


def _frozen(db: JobDb) -> list[tuple[str, Any]]:
    return [(row["item_id"], row["data"]) for row in db.items()]


def test_input_command_printing_json_lines(project: Project) -> None:
    # Given an input command that prints one JSON object per line
    (project.root / "out").mkdir()
    command = 'printf \'%s\\n\' \'{"k": "b", "n": 2}\' \'{"k": "a", "n": 1}\''
    project.workflow(mapreduce([RECORD_ITEM], input=command, id="${item.k}"))

    # When it runs
    result = project.run()

    # Then each line is one item, in order, and each command saw its object
    assert _frozen(project.db(result.job_id)) == [
        ("b", {"k": "b", "n": 2}),
        ("a", {"k": "a", "n": 1}),
    ]
    outputs = {name: json.loads(text) for name, text in project.files("out").items()}
    assert outputs == {"0": {"k": "b", "n": 2}, "1": {"k": "a", "n": 1}}


def test_input_command_printing_plain_lines(project: Project) -> None:
    # Given an input command that prints plain text lines (one blank)
    (project.root / "out").mkdir()
    command = "printf 'alpha\\nbeta two\\n\\ngamma\\n'"
    project.workflow(mapreduce([RECORD_ITEM], input=command, max_parallel=2))

    # When it runs
    result = project.run()

    # Then each non-blank line is a string item, seen by its command as itself
    assert _frozen(project.db(result.job_id)) == [
        ("0", "alpha"),
        ("1", "beta two"),
        ("2", "gamma"),
    ]
    assert project.files("out") == {"0": "alpha", "1": "beta two", "2": "gamma"}


def test_an_input_command_that_fails_is_an_error_naming_it(project: Project) -> None:
    # Given an input command that prints to stderr and fails
    (project.root / "out").mkdir()
    project.workflow(mapreduce([RECORD_ITEM], input="echo no-such-source >&2; exit 3"))

    # When it runs, then it is refused with the command and its stderr, and nothing ran
    with pytest.raises(InputError) as raised:
        project.run()
    message = str(raised.value)
    assert "no-such-source" in message
    assert "exit 3" in message
    assert project.files("out") == {}


def test_the_item_pipeline_and_dispatch_order(project: Project) -> None:
    # Given a document whose items are under "results", filtered, sorted, cut and named
    results = [
        {"name": "a", "score": 5, "kind": "x"},
        {"name": "b", "score": 9, "kind": "skip"},
        {"name": "c", "score": 7, "kind": "x"},
        {"name": "d", "score": 2, "kind": "x"},
        {"name": "e", "score": 7, "kind": "y"},
        {"name": "f", "score": 6},  # no kind: the comparison is false, so it is dropped
        {"name": "g", "score": 10, "kind": "x"},
    ]
    project.write("data.json", json.dumps({"meta": {"n": 7}, "results": results}))
    project.workflow(
        mapreduce(
            ['echo "${item_id}" >> order.txt'],
            input="data.json",
            json_path="$.results[*]",
            filter="score >= 5 && kind != 'skip'",
            sort_by="score DESC, name ASC",
            offset=1,
            max_items=3,
            id="${item.name}-${item.score}",
            max_parallel=1,
        )
    )

    # When it runs
    result = project.run()

    # Then the frozen list is g c e a -> offset 1 -> c e a, with the templated ids
    expected = ["c-7", "e-7", "a-5"]
    db = project.db(result.job_id)
    assert [item_id for item_id, _ in _frozen(db)] == expected
    assert [data["name"] for _, data in _frozen(db)] == ["c", "e", "a"]
    assert result.total_items == 3
    # And items were dispatched in the order of the frozen list
    assert project.lines("order.txt") == expected


# -- refusing a job before any item runs -----------------------------------------------


def test_duplicate_item_ids_exit_2_naming_the_ids(project: Project) -> None:
    # Given an id template that gives "a" twice and "c" twice
    (project.root / "out").mkdir()
    items = [{"k": k} for k in ("a", "b", "a", "c", "c")]
    project.workflow(mapreduce([RECORD_ITEM], id="${item.k}"), items=items)

    # When it runs through the CLI
    run = project.run_cli()

    # Then it exits 2 naming both duplicated ids, and no item ran
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "'a'" in run.stderr
    assert "'c'" in run.stderr
    assert "'b'" not in run.stderr
    assert project.files("out") == {}


def test_an_item_lacking_a_used_field_exits_2_before_any_item_ran(project: Project) -> None:
    # Given a template using ${item.name}, and one item (the third) without it
    (project.root / "out").mkdir()
    items = [{"name": "x"}, {"name": "y"}, {"title": "no name"}, {"name": "z"}]
    project.workflow(
        mapreduce(['printf "%s" "${item.name}" > "out/${item_index}"'], max_parallel=1),
        items=items,
    )

    # When it runs through the CLI
    run = project.run_cli()

    # Then it exits 2 naming the item and the field, and not even the valid items ran
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert "'2'" in run.stderr
    assert "name" in run.stderr
    assert project.files("out") == {}
    db = project.db(run.job_id)
    assert db.rows("SELECT * FROM attempts") == []


def test_default_ids_are_positions_and_progress_counts_them(project: Project) -> None:
    # Given a plain list of numbers, the default ids are their positions
    project.workflow(mapreduce(["true"]), items=[10, 20, 30])

    # When it runs through the library
    result = project.run()

    # Then the progress the library reports matches the frozen items
    progress = mapwise.get_job_progress(result.job_id, project.state_dir)
    assert (progress.total_items, progress.completed_items, progress.failed_items) == (3, 3, 0)
    assert progress.completion_percentage == 100.0
    assert _frozen(project.db(result.job_id)) == [("0", 10), ("1", 20), ("2", 30)]


# -- variables, captures, steps --------------------------------------------------------


def test_captures_flow_from_setup_to_map_and_reduce_and_between_steps(
    project: Project,
) -> None:
    # Given a setup capture, and a step capture used (bare, as $first) by a later step of
    # the same item, next to a workflow env variable
    (project.root / "out").mkdir()
    project.workflow(
        mapreduce(
            [
                {"shell": 'echo "${greeting}-${item}"', "capture": "first"},
                'printf "%s" "$first/${greeting}$SUFFIX" > "out/${item}"',
            ],
            env={"SUFFIX": "!"},
            setup=[{"shell": "echo hello", "capture": "greeting"}],
            reduce=['printf "%s" "${greeting} ${map.total}" > reduced.txt'],
            max_parallel=2,
        ),
        items=["a", "b"],
    )

    # When it runs
    result = project.run()

    # Then each item saw both captures, and reduce saw the setup capture
    assert exit_code_for(result.outcome) == 0
    assert project.files("out") == {"a": "hello-a/hello!", "b": "hello-b/hello!"}
    assert project.read("reduced.txt") == "hello 2"


def test_every_command_gets_the_mapwise_variables_and_the_item_file(project: Project) -> None:
    # Given items with nested data and an id template
    items: list[Any] = [
        {"name": "alpha", "text": 'it\'s "x"'},
        {"name": "beta", "nested": {"xs": [1, "two", None]}},
    ]
    (project.root / "env").mkdir()
    script = (
        'printf "%s\\n" "$MAPWISE_JOB_ID" "$MAPWISE_ITEM_ID" "$MAPWISE_ITEM_INDEX" '
        '"$MAPWISE_ATTEMPT" "${job_id}" "${item_id}" "${item_index}" "${attempt}" '
        '> "env/$MAPWISE_ITEM_INDEX.txt"; cp "$MAPWISE_ITEM_FILE" "env/$MAPWISE_ITEM_INDEX.json"'
    )
    project.workflow(
        mapreduce(
            [script],
            id="${item.name}",
            max_parallel=2,
            setup=['echo "$MAPWISE_JOB_ID" > setup_job'],
        ),
        items=items,
    )

    # When it runs with a chosen job id
    result = project.run(job_id="vars-job")

    # Then each command saw the job id, its item id, index and attempt
    assert exit_code_for(result.outcome) == 0
    for index, item in enumerate(items):
        expected = ["vars-job", item["name"], str(index), "1"]
        assert project.lines(f"env/{index}.txt") == expected * 2
        # And the item file holds exactly the item
        assert json.loads(project.read(f"env/{index}.json")) == item
    assert project.read("setup_job") == "vars-job\n"


HOSTILE = [
    "x'; touch PWNED; '",
    "$(touch PWNED)",
    "`touch PWNED`",
    '"; touch PWNED; "',
    "a\nb; touch PWNED",
    "${HOME}$(touch PWNED) $HOME",
    "' \" \\ $$ ; | & > PWNED < /dev/null",
]


def _no_pwned(root: Path) -> None:
    assert not [p for p in root.rglob("PWNED*")], "item data ran as shell code"


def test_hostile_item_data_in_shell_steps_runs_nothing(project: Project) -> None:
    # Given items that try to break out of every quoting context
    (project.root / "out").mkdir()
    template = [
        "printf '%s\\n' 'Processing ${item.v}' > \"out/${item_index}.single\"",
        'printf "%s\\n" "${item.v}" > "out/${item_index}.double"',
        'printf "%s\\n" ${item.v} > "out/${item_index}.bare"',
        'cat > "out/${item_index}.heredoc" <<EOF\n${item.v}\nEOF',
        'x=$(printf "%s" "${item.v}"); printf "%s\\n" "$x" > "out/${item_index}.subst"',
    ]
    project.workflow(mapreduce(template, max_parallel=4), items=[{"v": value} for value in HOSTILE])

    # When it runs
    result = project.run()

    # Then every item succeeded, nothing was executed, and each command saw the exact text
    assert (result.succeeded, exit_code_for(result.outcome)) == (len(HOSTILE), 0)
    _no_pwned(project.root)
    for index, value in enumerate(HOSTILE):
        for kind in ("double", "bare", "heredoc", "subst"):
            assert project.read(f"out/{index}.{kind}") == value + "\n", (index, kind)
        assert project.read(f"out/{index}.single") == f"Processing {value}\n"


def test_a_claude_step_gets_the_prompt_as_one_argument(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the fake agent, a prompt holding quotes and $(...) from item data, and an
    # exit code per item through the step's env
    record = project.root / "argv"
    monkeypatch.setenv("FAKE_CLAUDE_RECORD_DIR", str(record))
    (project.root / "answers").mkdir()
    text = 'it\'s "quoted" $(touch PWNED) `touch PWNED` ; echo hi > PWNED'
    items = [
        {"name": "q1", "text": text, "exit": "0"},
        {"name": "q2", "text": "plain", "exit": "5"},
    ]
    project.workflow(
        mapreduce(
            [
                {
                    "claude": "/fix ${item.text} --id ${item_id}",
                    "env": {"FAKE_CLAUDE_EXIT": "${item.exit}"},
                    "capture": "answer",
                },
                'printf "%s" "${answer}" > "answers/${item_id}"',
            ],
            id="${item.name}",
            max_parallel=2,
        ),
        items=items,
    )

    # When it runs
    result = project.run()

    # Then the agent got `-p PROMPT`, the prompt as one argument with the data verbatim,
    # then the contract's output format and a session of its own (docs/agents.md)
    for name, prompt in (("q1", f"/fix {text} --id q1"), ("q2", "/fix plain --id q2")):
        argv = json.loads((record / f"{name}.json").read_text())
        assert argv[:5] == ["-p", prompt, "--output-format", "json", "--session-id"]
        assert uuid.UUID(argv[5]) and len(argv) == 6
    assert project.files("answers") == {"q1": f"/fix {text} --id q1"}
    _no_pwned(project.root)
    # And the agent's exit code decided the item's fate
    (entry,) = mapwise.dlq_list(result.job_id, project.state_dir)
    assert (entry.item_id, entry.exit_code, entry.error_kind) == ("q2", 5, "exit_code")


def test_write_file_writes_interpolated_content(project: Project) -> None:
    # Given write_file steps in map and reduce, with data that looks like shell code
    items = [{"name": "a", "body": "x'; $(touch PWNED) ${HOME}"}, {"name": "b", "body": "plain"}]
    project.workflow(
        mapreduce(
            [
                {
                    "write_file": {
                        "path": "out/${item.name}.txt",
                        "content": "body=${item.body}\nid=${item_id} index=${item_index}\n",
                    }
                }
            ],
            id="${item.name}",
            reduce=[{"write_file": {"path": "summary.txt", "content": "${map.successful}"}}],
        ),
        items=items,
    )

    # When it runs
    result = project.run()

    # Then the files hold the interpolated text, data verbatim
    assert exit_code_for(result.outcome) == 0
    assert project.files("out") == {
        "a.txt": "body=x'; $(touch PWNED) ${HOME}\nid=a index=0\n",
        "b.txt": "body=plain\nid=b index=1\n",
    }
    assert project.read("summary.txt") == "2"
    _no_pwned(project.root)
