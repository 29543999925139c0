"""The agent CLIs' contracts as pure functions (``mapwise.agents``): the argv of a run,
new or continued, and what a run's standard output says of itself.

No process runs here: the argv builders and the readers take and give plain values. The
shapes of the outputs are those docs/fake-agents.md documents for the real CLIs (a
``json`` result object, ``json --verbose`` arrays, ``stream-json`` lines, Codex's
``exec --json`` events), plus what a crash or a hostile agent may print instead.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapwise.agents import claude, codex, jsonout
from mapwise.agents.call import DEFAULT_CONTINUE_PROMPT, AgentCall, AgentReading

SID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
THREAD = "0199a213-81c0-7800-8aa1-bbab2a035a53"
CLAUDE = ("claude",)
FAKE = ("/usr/bin/python3", "/opt/fake claude.py")  # MAPWISE_CLAUDE split into words
CODEX = ("codex",)
MB = 1024 * 1024


def new_call(prompt: str = "Fix the bug", **options: Any) -> AgentCall:
    return AgentCall(prompt=prompt, session=SID, **options)


def result(**fields: Any) -> dict[str, Any]:
    """A claude result object as ``--output-format json`` prints it (success by default)."""
    obj: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "duration_ms": 2400,
        "duration_api_ms": 2100,
        "num_turns": 3,
        "result": "Fixed it.",
        "session_id": SID,
        "total_cost_usd": 0.0123,
        "usage": {
            "input_tokens": 120,
            "cache_creation_input_tokens": 400,
            "cache_read_input_tokens": 9000,
            "output_tokens": 345,
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "service_tier": "standard",
        },
        "modelUsage": {
            "claude-haiku-4-5": {"inputTokens": 10, "outputTokens": 5, "costUSD": 0.0003},
            "claude-sonnet-4-5": {"inputTokens": 110, "outputTokens": 340, "costUSD": 0.012},
        },
        "permission_denials": [],
        "uuid": "0f248586-4c5a-416d-b58a-390c6ffa0b9f",
    }
    obj.update(fields)
    return obj


def without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


INIT = {"type": "system", "subtype": "init", "session_id": SID, "model": "claude-sonnet-4-5"}
ASSISTANT = {
    "type": "assistant",
    "message": {"role": "assistant", "content": [{"type": "text", "text": "working"}]},
    "session_id": SID,
}


def read(output: str, call: AgentCall | None = None) -> AgentReading:
    return claude.read(output, call or new_call())


def assert_no_result(reading: AgentReading, call: AgentCall) -> None:
    """Nothing was read: the exit status decides, and the ledger row says so."""
    assert reading.failed is None
    assert reading.text is None
    usage = reading.usage
    assert (usage.agent, usage.session_id, usage.result_read) == ("claude", call.session, False)
    assert (usage.cost_usd, usage.input_tokens, usage.output_tokens, usage.turns) == (
        None,
        0,
        0,
        0,
    )


# -- claude argv -------------------------------------------------------------------------


def test_claude_new_run_without_options() -> None:
    assert claude.argv(CLAUDE, new_call()) == (
        "claude",
        "-p",
        "Fix the bug",
        "--output-format",
        "json",
        "--session-id",
        SID,
    )


def test_claude_new_run_with_every_option_in_order() -> None:
    # Given a step with every claude option and an item budget
    call = new_call(
        "Fix ${x} $(rm -rf /) 'quoted'",
        model="opus",
        max_turns=7,
        allowed_tools=("Read", "Edit", "Bash(git:*)"),
        permission_mode="acceptEdits",
        append_system_prompt="Be brief.\nNo chatter.",
        args=("--fallback-model", "sonnet", "--verbose"),
        budget_usd=0.1234567,
    )

    # Then the command line is the CLI's words, the prompt one argument, the options in
    # a fixed order, the budget with 6 decimals, the extra args last
    assert claude.argv(FAKE, call) == (
        *FAKE,
        "-p",
        "Fix ${x} $(rm -rf /) 'quoted'",
        "--output-format",
        "json",
        "--session-id",
        SID,
        "--model",
        "opus",
        "--max-turns",
        "7",
        "--permission-mode",
        "acceptEdits",
        "--append-system-prompt",
        "Be brief.\nNo chatter.",
        "--max-budget-usd",
        "0.123457",
        "--allowedTools",
        "Read",
        "Edit",
        "Bash(git:*)",
        "--fallback-model",
        "sonnet",
        "--verbose",
    )


def test_claude_continued_run_resumes_the_session_with_the_continue_prompt() -> None:
    # Given a continued step (the caller renders the continue prompt) with options
    call = AgentCall(
        prompt=DEFAULT_CONTINUE_PROMPT,
        session=SID,
        resume=True,
        model="sonnet",
        max_turns=3,
        budget_usd=2.0,
    )

    # Then --resume replaces --session-id, and the options come as for a new run
    assert claude.argv(CLAUDE, call) == (
        "claude",
        "-p",
        DEFAULT_CONTINUE_PROMPT,
        "--output-format",
        "json",
        "--resume",
        SID,
        "--model",
        "sonnet",
        "--max-turns",
        "3",
        "--max-budget-usd",
        "2.000000",
    )
    assert "--session-id" not in claude.argv(CLAUDE, call)
    assert DEFAULT_CONTINUE_PROMPT.startswith("You were interrupted before you finished.")


def test_claude_without_a_session_names_none() -> None:
    call = AgentCall(prompt="hello", session=None)
    assert claude.argv(CLAUDE, call) == ("claude", "-p", "hello", "--output-format", "json")


@pytest.mark.parametrize("prompt", ["-x do it", "--help", "-", "--session-id evil"])
def test_claude_prompt_starting_with_a_dash_comes_last_after_double_dash(prompt: str) -> None:
    # Given a prompt that an option parser would take for an option
    call = new_call(prompt, allowed_tools=("Read", "Edit"), args=("--verbose",))

    # Then it is not put after -p but at the very end, after "--" (so that neither -p
    # nor the variadic --allowedTools swallows it, and it is never read as an option)
    assert claude.argv(CLAUDE, call) == (
        "claude",
        "-p",
        "--output-format",
        "json",
        "--session-id",
        SID,
        "--allowedTools",
        "Read",
        "Edit",
        "--verbose",
        "--",
        prompt,
    )


def test_claude_prompt_with_a_dash_inside_stays_after_p() -> None:
    argv = claude.argv(CLAUDE, new_call("fix a-b --not-an-option"))
    assert argv[1:3] == ("-p", "fix a-b --not-an-option")
    assert "--" not in argv


# -- codex argv --------------------------------------------------------------------------


def test_codex_new_run() -> None:
    call = AgentCall(prompt="Fix it", session=None)
    assert codex.argv(CODEX, call) == ("codex", "exec", "--json", "Fix it")


def test_codex_new_run_with_model_and_args() -> None:
    call = AgentCall(
        prompt="Fix it", session=None, model="gpt-5-codex", args=("--skip-git-repo-check",)
    )
    assert codex.argv(FAKE, call) == (
        *FAKE,
        "exec",
        "--json",
        "--model",
        "gpt-5-codex",
        "--skip-git-repo-check",
        "Fix it",
    )


def test_codex_continued_run_resumes_the_thread() -> None:
    call = AgentCall(
        prompt=DEFAULT_CONTINUE_PROMPT,
        session=THREAD,
        resume=True,
        model="gpt-5",
        args=("--skip-git-repo-check",),
    )
    assert codex.argv(CODEX, call) == (
        "codex",
        "exec",
        "--json",
        "--model",
        "gpt-5",
        "--skip-git-repo-check",
        "resume",
        THREAD,
        DEFAULT_CONTINUE_PROMPT,
    )


def test_codex_prompt_starting_with_a_dash_comes_after_double_dash() -> None:
    new = AgentCall(prompt="--version", session=None)
    assert codex.argv(CODEX, new) == ("codex", "exec", "--json", "--", "--version")
    resumed = AgentCall(prompt="-carry on", session=THREAD, resume=True)
    assert codex.argv(CODEX, resumed) == (
        "codex",
        "exec",
        "--json",
        "resume",
        THREAD,
        "--",
        "-carry on",
    )


# -- claude results ----------------------------------------------------------------------


def test_claude_success_object() -> None:
    # Given the one-line result object of --output-format json
    reading = read(json.dumps(result()) + "\n")

    # Then it succeeded, with its text, session, cost, tokens, turns, API time, and the
    # model that cost the most
    assert (reading.failed, reading.detail, reading.text) == (False, "", "Fixed it.")
    usage = reading.usage
    assert usage.agent == "claude"
    assert (usage.session_id, usage.continued, usage.result_read) == (SID, False, True)
    assert (usage.is_error, usage.subtype) == (False, "success")
    assert usage.cost_usd == pytest.approx(0.0123)
    assert (usage.input_tokens, usage.output_tokens) == (120, 345)
    assert (usage.cache_read_tokens, usage.cache_creation_tokens) == (9000, 400)
    assert usage.turns == 3
    assert usage.api_ms == 2100
    assert usage.model == "claude-sonnet-4-5"


def test_claude_continued_reading_is_marked_continued() -> None:
    call = AgentCall(prompt=DEFAULT_CONTINUE_PROMPT, session=SID, resume=True)
    reading = read(json.dumps(result()), call)
    assert reading.usage.continued is True
    assert reading.failed is False


def test_claude_is_error_with_subtype_success_fails() -> None:
    # Given an API error: subtype success, is_error true, the error in the result text
    text = 'API Error: 529 {"type":"error","error":{"type":"overloaded_error"}}\nsecond line'
    obj = result(is_error=True, result=text, api_error_status=529, total_cost_usd=0.0)

    reading = read(json.dumps(obj))

    # Then the step fails; the detail is "is_error" and the text's first line
    assert reading.failed is True
    assert (
        reading.detail
        == 'is_error: API Error: 529 {"type":"error","error":{"type":"overloaded_error"}}'
    )
    assert (reading.usage.is_error, reading.usage.subtype) == (True, "success")
    assert reading.usage.result_read is True
    assert reading.text == text


def test_claude_error_max_turns_reads_its_errors_list() -> None:
    # Given error_max_turns as the CLI prints it: no "result", an "errors" list
    obj = without(
        result(
            subtype="error_max_turns",
            is_error=True,
            num_turns=2,
            errors=["Reached maximum number of turns (1)"],
        ),
        "result",
    )

    reading = read(json.dumps(obj))

    # Then it failed, the detail names the subtype and the CLI's words; nothing to capture
    assert reading.failed is True
    assert reading.detail == "error_max_turns: Reached maximum number of turns (1)"
    assert reading.text is None
    assert (reading.usage.subtype, reading.usage.is_error, reading.usage.turns) == (
        "error_max_turns",
        True,
        2,
    )
    assert reading.usage.cost_usd == pytest.approx(0.0123)


def test_claude_error_max_budget_usd() -> None:
    obj = without(
        result(
            subtype="error_max_budget_usd",
            is_error=True,
            total_cost_usd=0.5,
            errors=["Reached maximum budget ($0.5)"],
        ),
        "result",
    )
    reading = read(json.dumps(obj))
    assert reading.failed is True
    assert reading.detail == "error_max_budget_usd: Reached maximum budget ($0.5)"
    assert reading.usage.cost_usd == 0.5


def test_claude_error_subtype_without_is_error_still_fails() -> None:
    obj = without(result(subtype="error_during_execution"), "result")
    reading = read(json.dumps(obj))
    assert (reading.failed, reading.detail) == (True, "error_during_execution")


def test_claude_errors_given_as_objects() -> None:
    obj = result(subtype="error_during_execution", is_error=True, errors=[{"message": "boom"}])
    assert read(json.dumps(obj)).detail == "error_during_execution: boom"


def test_claude_json_verbose_array_last_result_element_wins() -> None:
    # Given json --verbose: one JSON array of messages, with two result elements
    first = result(result="first", total_cost_usd=0.5)
    last = result(result="last", total_cost_usd=0.02, num_turns=5)
    output = json.dumps([INIT, ASSISTANT, first, ASSISTANT, last, {"type": "user"}]) + "\n"

    reading = read(output)

    assert (reading.failed, reading.text) == (False, "last")
    assert (reading.usage.cost_usd, reading.usage.turns) == (0.02, 5)


def test_claude_pretty_printed_array_last_result_element_wins() -> None:
    output = json.dumps([INIT, result(result="a"), result(result="b")], indent=2)
    assert read(output).text == "b"


def test_claude_stream_json_last_result_line_wins() -> None:
    # Given stream-json: one message per line, two result lines, text after them
    lines = [
        INIT,
        ASSISTANT,
        result(result="early", total_cost_usd=0.9),
        ASSISTANT,
        result(result="late", total_cost_usd=0.03),
    ]
    output = "\n".join(json.dumps(line) for line in lines) + "\n\nSome trailing words\n"

    reading = read(output)

    assert (reading.failed, reading.text, reading.usage.cost_usd) == (False, "late", 0.03)


def test_claude_stream_json_with_a_cut_last_line_finds_the_earlier_result() -> None:
    whole = json.dumps(result(result="complete"))
    output = "\n".join([json.dumps(INIT), whole, whole[: len(whole) // 2]])
    assert read(output).text == "complete"


def test_claude_pretty_printed_object() -> None:
    output = json.dumps(result(result="pretty"), indent=2) + "\n"
    reading = read(output)
    assert (reading.failed, reading.text, reading.usage.turns) == (False, "pretty", 3)


def test_claude_object_of_another_type_is_no_result() -> None:
    call = new_call()
    for output in (json.dumps(INIT), json.dumps([INIT, ASSISTANT]), json.dumps(INIT, indent=1)):
        assert_no_result(read(output, call), call)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "\n\n",
        "Fixed it, no JSON here.\n",
        "Traceback (most recent call last):\n  File 'x', line 1\nKeyError: 'x'\n",
        '{"type": "result", "subtype": "success", "is_error": false, "result": "cut',
        '{"type":"result"',
        "{\n" + '"type": "result",\n' + '"result": "never closed"\n',
        "[" + json.dumps(result())[:-5],
        "\x00\x01\x02\ufffd{}[]{",
        "}{][",
        "null",
        "42",
        "true",
        '"result"',
        "[1, 2, 3]",
        '["result", {"type": "assistant"}]',
        json.dumps({"result": "no type"}),
        json.dumps({"type": "RESULT", "result": "wrong case"}),
        json.dumps([[result()]]),  # a result nested one level too deep is not an element
    ],
    ids=lambda o: repr(o[:24]),
)
def test_claude_no_result_at_all(output: str) -> None:
    call = new_call(model="opus")
    reading = read(output, call)
    assert_no_result(reading, call)
    assert reading.usage.model == "opus"  # the step's model when the run says none


@pytest.mark.parametrize(
    "output",
    [
        "[" * 100_000,
        "[" * 100_000 + "]" * 100_000,
        "{" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        "[\n" * 100_000,
        "[" * 100_000 + "\n" + json.dumps(result(result="after")),
    ],
    ids=["open", "closed", "braces", "objects", "lines", "then-a-result"],
)
def test_claude_deeply_nested_json_never_raises(output: str) -> None:
    reading = read(output)
    if output.endswith(json.dumps(result(result="after"))):
        assert reading.text == "after"
    else:
        assert reading.failed is None


def test_claude_huge_output_with_the_result_last() -> None:
    # Given several MB of noise, then the result line
    noise = ("x" * 199 + "\n") * (6 * MB // 200)
    output = noise + json.dumps(result(result="found")) + "\n"
    assert len(output) > 5 * MB

    reading = read(output)

    assert (reading.failed, reading.text) == (False, "found")


def test_claude_huge_single_line_and_huge_result_text() -> None:
    huge_line = "{" + "a" * (8 * MB)
    assert read(huge_line).failed is None
    big_text = "y" * (5 * MB)
    reading = read(json.dumps(result(result=big_text)))
    assert reading.text == big_text


def test_claude_many_json_lines_without_a_result() -> None:
    output = (json.dumps(ASSISTANT) + "\n") * 150_000
    assert read(output).failed is None


@pytest.mark.parametrize(
    "bad",
    ["12", "0.5", True, False, None, float("nan"), float("inf"), [1], {"n": 1}],
    ids=repr,
)
def test_claude_numbers_of_the_wrong_type_read_as_zero_or_none(bad: Any) -> None:
    # Given a result whose cost, token, turn and API-time fields are not JSON numbers
    obj = result(
        total_cost_usd=bad,
        num_turns=bad,
        duration_api_ms=bad,
        usage={
            "input_tokens": bad,
            "output_tokens": bad,
            "cache_read_input_tokens": bad,
            "cache_creation_input_tokens": bad,
        },
        modelUsage={"m-cheap": {"costUSD": bad}, "m-dear": {"costUSD": 0.1}},
    )
    output = json.dumps(obj)  # NaN and Infinity as Python's json writes (and reads) them

    reading = read(output)

    # Then the result still counts; the cost is None and the counts 0
    assert (reading.failed, reading.text) == (False, "Fixed it.")
    usage = reading.usage
    assert usage.cost_usd is None
    assert usage.api_ms is None
    assert (usage.input_tokens, usage.output_tokens, usage.turns) == (0, 0, 0)
    assert (usage.cache_read_tokens, usage.cache_creation_tokens) == (0, 0)
    assert usage.model == "m-dear"


def test_claude_odd_counts_and_shapes() -> None:
    # Negative counts are 0, fractional ones are cut, a usage that is not an object is
    # empty, and a session id or model table of the wrong type falls back to the call's
    obj = result(
        num_turns=-3,
        usage=["not", "an", "object"],
        session_id=12345,
        modelUsage=["x"],
        result=["not text"],
    )
    call = new_call(model="haiku")
    reading = read(json.dumps(obj), call)
    assert reading.failed is False
    assert reading.text is None
    usage = reading.usage
    assert (usage.turns, usage.input_tokens, usage.session_id, usage.model) == (
        0,
        0,
        SID,
        "haiku",
    )
    fractional = read(json.dumps(result(num_turns=2.9, usage={"output_tokens": 10.7})))
    assert (fractional.usage.turns, fractional.usage.output_tokens) == (2, 10)


def test_claude_session_of_the_result_wins_over_the_call() -> None:
    other = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
    assert read(json.dumps(result(session_id=other))).usage.session_id == other


def test_claude_no_session_is_found_from_stderr() -> None:
    assert claude.no_session(f"No conversation found with session ID: {SID}\n")
    assert not claude.no_session("Error: Session ID x is already in use.")


# -- codex results -----------------------------------------------------------------------


def events(*objs: dict[str, Any]) -> str:
    return "".join(json.dumps(obj) + "\n" for obj in objs)


STARTED = {"type": "thread.started", "thread_id": THREAD}
TURN = {"type": "turn.started"}


def message(text: str, n: int = 0) -> dict[str, Any]:
    return {
        "type": "item.completed",
        "item": {"id": f"item_{n}", "type": "agent_message", "text": text},
    }


def completed(inputs: int, cached: int, outputs: int) -> dict[str, Any]:
    usage = {"input_tokens": inputs, "cached_input_tokens": cached, "output_tokens": outputs}
    return {"type": "turn.completed", "usage": usage}


def failure(text: str) -> list[dict[str, Any]]:
    return [{"type": "error", "message": text}, {"type": "turn.failed", "error": {"message": text}}]


def codex_new(**options: Any) -> AgentCall:
    return AgentCall(prompt="Fix it", session=None, **options)


def test_codex_thread_message_and_usage() -> None:
    # Given a whole run: thread, turn, a file change, the agent's message, the usage
    output = events(
        STARTED,
        TURN,
        {"type": "item.completed", "item": {"id": "item_0", "type": "file_change", "changes": []}},
        message("Done: fixed.", 1),
        completed(2400, 2048, 120),
    )

    reading = codex.read(output, codex_new(model="gpt-5"))

    # Then: success, the thread is the session, input counts only the uncached tokens
    assert (reading.failed, reading.detail, reading.text) == (False, "", "Done: fixed.")
    usage = reading.usage
    assert (usage.agent, usage.session_id, usage.result_read) == ("codex", THREAD, True)
    assert (usage.is_error, usage.subtype, usage.turns) == (False, "success", 1)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (352, 2048, 120)
    assert usage.cache_creation_tokens == 0
    assert usage.cost_usd is None  # Codex reports no cost
    assert usage.model == "gpt-5"


def test_codex_turns_add_up_and_the_last_message_is_the_text() -> None:
    output = events(
        STARTED,
        TURN,
        message("first"),
        completed(100, 40, 10),
        TURN,
        message("second", 1),
        completed(300, 200, 30),
    )
    reading = codex.read(output, codex_new())
    assert reading.text == "second"
    usage = reading.usage
    assert usage.turns == 2
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (160, 240, 40)


def test_codex_more_cached_than_input_is_never_negative() -> None:
    reading = codex.read(events(STARTED, completed(10, 50, 1)), codex_new())
    assert (reading.usage.input_tokens, reading.usage.cache_read_tokens) == (0, 50)


def test_codex_error_and_turn_failed_are_one_failure_with_the_message() -> None:
    # Given a failed turn: an error event then turn.failed, with the same message
    text = "We're currently experiencing high demand, which may cause temporary errors."
    output = events(STARTED, TURN, *failure(text))

    reading = codex.read(output, codex_new())

    # Then one failure, one turn, the detail is the message once
    assert (reading.failed, reading.detail) == (True, text)
    usage = reading.usage
    assert (usage.is_error, usage.subtype, usage.turns, usage.result_read) == (
        True,
        "turn.failed",
        1,
        True,
    )
    assert usage.session_id == THREAD


def test_codex_turn_failed_without_a_message() -> None:
    reading = codex.read(events(STARTED, {"type": "turn.failed"}), codex_new())
    assert (reading.failed, reading.detail) == (True, "turn.failed")


def test_codex_a_retried_stream_error_before_turn_completed_is_no_failure() -> None:
    output = events(
        STARTED,
        TURN,
        {"type": "error", "message": "Reconnecting... 1/5 (stream disconnected before completion)"},
        message("Done anyway."),
        completed(2400, 2048, 120),
    )
    reading = codex.read(output, codex_new())
    assert (reading.failed, reading.text) == (False, "Done anyway.")


def test_codex_an_error_no_turn_got_over_fails_the_run() -> None:
    # a fatal error before any turn ends (codex prints it and exits)
    output = events(STARTED, TURN, {"type": "error", "message": "stream disconnected"})
    reading = codex.read(output, codex_new())
    assert (reading.failed, reading.detail) == (True, "stream disconnected")


def test_claude_a_negative_cost_is_no_cost() -> None:
    # a total can only grow: a nonsense negative cost never lowers it (or raises a budget)
    line = json.dumps({"type": "result", "subtype": "success", "total_cost_usd": -5})
    assert claude.read(line, new_call()).usage.cost_usd is None


@pytest.mark.parametrize(
    "output",
    ["", "Reading prompt from stdin...\n", events(STARTED, TURN), "[" * 100_000, "{" + "z" * MB],
    ids=["empty", "text", "started-only", "nested", "huge"],
)
def test_codex_no_end_event_is_no_result(output: str) -> None:
    reading = codex.read(output, codex_new())
    assert reading.failed is None
    assert reading.usage.result_read is False
    assert reading.usage.subtype is None
    assert (reading.usage.turns, reading.usage.input_tokens) == (0, 0)


def test_codex_session_is_learnt_from_the_first_line_or_kept_on_resume() -> None:
    assert codex.read("", codex_new()).usage.session_id is None
    assert codex.read(events(STARTED), codex_new()).usage.session_id == THREAD
    resumed = AgentCall(prompt=DEFAULT_CONTINUE_PROMPT, session=THREAD, resume=True)
    reading = codex.read(events(TURN, message("ok"), completed(5, 0, 1)), resumed)
    assert (reading.usage.session_id, reading.usage.continued, reading.failed) == (
        THREAD,
        True,
        False,
    )


def test_codex_token_fields_of_the_wrong_type_read_as_zero() -> None:
    bad = {"type": "turn.completed", "usage": {"input_tokens": "9", "cached_input_tokens": True}}
    reading = codex.read(
        events(STARTED, bad, {"type": "turn.completed", "usage": "x"}), codex_new()
    )
    assert reading.failed is False
    assert (reading.usage.input_tokens, reading.usage.cache_read_tokens) == (0, 0)
    assert reading.usage.turns == 2


def test_codex_thread_started_reads_only_that_event() -> None:
    assert codex.thread_started(json.dumps(STARTED)) == THREAD
    assert codex.thread_started(json.dumps(TURN)) is None
    assert codex.thread_started("not json") is None
    assert codex.thread_started('{"type": "thread.started", "thread_id": 5}') is None


def test_codex_no_session_is_found_from_stderr() -> None:
    said = f"Error: thread/resume: thread/resume failed: no rollout found for thread id {THREAD}"
    assert codex.no_session(said)
    assert not codex.no_session("error: unexpected argument '--foo' found")


# -- properties --------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "result", "subtype", "usage", "x"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)
fragments = st.sampled_from(
    ['{"type":"result"', '"is_error":true}', "[", "]", "{", "}", "\n", '{"type":"result",', "NaN"]
)
noise_lines = st.lists(
    st.one_of(st.text(max_size=40), json_values.map(json.dumps), fragments), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), noise_lines.map("\n".join), noise_lines.map("".join)))
def test_claude_read_never_raises(output: str) -> None:
    reading = claude.read(output, new_call())
    assert reading.failed in (None, True, False)
    assert reading.usage.agent == "claude"
    codex.read(output, codex_new())  # nor does Codex's reader


@settings(max_examples=300, deadline=None)
@given(noise_lines, st.text(max_size=20))
def test_last_object_finds_an_object_appended_after_any_noise(
    noise: list[str], marker: str
) -> None:
    # Given arbitrary lines, then one result object on a line of its own
    wanted = {"type": "result", "marker": marker}
    output = "\n".join([*noise, json.dumps(wanted)]) + "\n"

    # Then it is the last object that matches
    assert jsonout.last_object(output, lambda obj: obj.get("type") == "result") == wanted
