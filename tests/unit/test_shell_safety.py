"""Item data is never shell code: bound scripts run for real under /bin/sh (and bash).

Each test runs the bound script in a scratch directory that is also $HOME, so a value that
did become code (``; touch canary``, ``rm -rf ~``) would leave a trace we can see.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mapwise.errors import InterpolationError
from mapwise.interpolate import BoundShell, Scope, bind_shell

NASTIES = [
    "x'; rm -rf ~; '",
    "$(touch canary)",
    "`touch canary`",
    "; touch canary",
    "a\ntouch canary\n",
    "' ; touch canary ; '",
    '" ; touch canary ; "',
    '"$(touch canary)"',
    "'$(touch canary)'",
    "\\",
    "\\'",
    '\\"',
    "trailing backslash \\",
    '"',
    "'",
    ";",
    "&& touch canary",
    "| touch canary",
    "${HOME}",
    "$HOME $1 $$ $@ $*",
    "$((1+1))",
    "*",
    "  spaced   out  ",
    "",
    "\n",
    "line one\nline two\n\n",
    "EOF",
    "x\nEOF\ntouch canary\n",
    "\tEOF",
    "\ttab first",
    ")",
    "}",
    "${MAPWISE_V0}",
    "-n",
    "unicode: żółw 🐢 日本語 \u200b",
    "\r\n",
]

PIECES = ["'", '"', "\\", "$", "`", "(", ")", "{", "}", "\n", "EOF", "\t", ";", "#", " ", "~"]

# (name, template, how to get the value back from the context's output file)
CONTEXTS: list[tuple[str, str, str]] = [
    ("unquoted", "printf '%s' ${item.v}", "exact"),
    ("single quotes", "printf '%s' '${item.v}'", "exact"),
    ("double quotes", "printf '%s' \"${item.v}\"", "exact"),
    ("mixed word", "printf '%s' 'a'${item.v}\"b\"'${item.v}'", "mixed"),
    ("heredoc unquoted", "cat <<EOF\n${item.v}\nEOF", "newline"),
    ("heredoc quoted", "cat <<'EOF'\n${item.v}\nEOF", "newline"),
    ("heredoc double-quoted", 'cat <<"EOF"\n${item.v}\nEOF', "newline"),
    ("heredoc tabs", "cat <<-EOF\n\t${item.v}\n\tEOF", "newline"),
    ("heredoc tabs quoted", "cat <<-'EOF'\n\t${item.v}\n\tEOF", "newline"),
    ("inside $()", "x=$(printf '%s' ${item.v}; printf .)\nprintf '%s' \"${x%.}\"", "exact"),
    ('inside "$()"', "printf '%s' \"$(printf '%s' ${item.v}; printf .)\"", "dot"),
    ('inside "$()" quoted', "printf '%s' \"$(printf '%s' '${item.v}'; printf .)\"", "dot"),
    ("backticks", "printf '%s' \"`printf '%s' \"${item.v}\"; printf .`\"", "dot"),
    ("shell default", "printf '%s' \"${unset_var:-${item.v}}\"", "exact"),
]


def _expected(how: str, value: str) -> str:
    return {
        "exact": value,
        "newline": value + "\n",
        "dot": value + ".",
        "mixed": "a" + value + "b" + value,
    }[how]


def _scope(value: Any) -> Scope:
    return Scope(job_id="job-1", item={"v": value}, item_id="item-1", item_index=0, attempt=1)


def _run(
    bound: BoundShell, home: Path, shell: str = "/bin/sh"
) -> subprocess.CompletedProcess[bytes]:
    env = os.environ | {"HOME": str(home)} | bound.env
    return subprocess.run(
        [shell, "-c", bound.script],
        cwd=home,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )


def _check_all_contexts(value: str, shell: str = "/bin/sh") -> None:
    """Run every context in one script, each writing to its own file, and compare."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "keep").write_text("still here")
        # Given one script that exercises each quoting context
        script = "\n".join(
            f"{{\n{template}\n}} > out{i}" for i, (_, template, _) in enumerate(CONTEXTS)
        )
        bound = bind_shell(script, _scope(value))
        # When it runs
        _run(bound, home, shell)
        # Then every context printed the value's exact text and nothing else ran
        for i, (name, _, how) in enumerate(CONTEXTS):
            out = (home / f"out{i}").read_bytes().decode("utf-8")
            assert out == _expected(how, value), f"context {name!r} under {shell}"
        leftovers = sorted(p.name for p in home.iterdir())
        assert leftovers == sorted(["keep", *(f"out{i}" for i in range(len(CONTEXTS)))])
        assert (home / "keep").read_text() == "still here"


@pytest.mark.parametrize("value", NASTIES)
def test_nasty_values_reach_the_command_exactly_under_sh(value: str) -> None:
    _check_all_contexts(value)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
@pytest.mark.parametrize("value", NASTIES)
def test_nasty_values_reach_the_command_exactly_under_bash(value: str) -> None:
    _check_all_contexts(value, shell=shutil.which("bash") or "bash")


_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=30)
_VALUES = st.one_of(
    _TEXT,
    st.lists(st.one_of(st.sampled_from(PIECES + NASTIES), _TEXT), max_size=6).map("".join),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_VALUES)
def test_any_value_reaches_the_command_exactly(value: str) -> None:
    _check_all_contexts(value)


def test_prodigy_style_quoting_keeps_working(tmp_path: Path) -> None:
    # Given the two forms prodigy users write
    scope = Scope(job_id="j", item={"id": 42, "name": "Ada Lovelace"}, item_id="42")
    template = "echo 'Processing ${item.id}'\necho \"${item.name}\""
    # When bound and run
    result = _run(bind_shell(template, scope), tmp_path)
    # Then the output is what a text substitution would have given
    assert result.stdout == b"Processing 42\nAda Lovelace\n"


def test_the_injection_from_the_spec_runs_nothing(tmp_path: Path) -> None:
    scope = _scope("x'; touch canary; '")
    result = _run(bind_shell("echo 'Processing ${item.v}'", scope), tmp_path)
    assert result.stdout == b"Processing x'; touch canary; '\n"
    assert list(tmp_path.iterdir()) == []


def test_non_string_fields_arrive_as_json_text(tmp_path: Path) -> None:
    scope = Scope(job_id="j", item={"n": 3, "o": {"a": [1, None, True]}, "f": 1.5})
    result = _run(bind_shell("printf '%s|' ${item.n} '${item.o}' \"${item.f}\"", scope), tmp_path)
    assert result.stdout == b'3|{"a":[1,null,true]}|1.5|'


def test_workflow_env_and_captures_are_bound_in_both_forms(tmp_path: Path) -> None:
    scope = Scope(job_id="j", env={"DIR": "a b; touch canary"}, captures={"out": "$(x)"})
    result = _run(bind_shell("printf '%s|' $DIR ${DIR} \"$out\" '${out}'", scope), tmp_path)
    assert result.stdout == b"a b; touch canary|a b; touch canary|$(x)|$(x)|"
    assert list(tmp_path.iterdir()) == []


def test_unknown_names_and_shell_syntax_are_left_to_the_shell(tmp_path: Path) -> None:
    template = 'printf \'%s|\' "${HOME}" "$$" "$1" "$(echo sub)" "$((1 + 2))" ${#HOME}'
    bound = bind_shell(template, Scope(job_id="j"))
    assert bound.script == template
    assert bound.env == {}
    result = _run(bound, tmp_path)
    parts = result.stdout.decode().split("|")
    assert parts[0] == str(tmp_path)
    assert parts[2:5] == ["", "sub", "3"]


def test_raw_is_the_opt_out_and_pastes_code(tmp_path: Path) -> None:
    # Given a trusted template that wants its value parsed as shell code
    scope = _scope("printf '%s' trusted; touch canary")
    bound = bind_shell("${raw:item.v}", scope)
    assert bound.script == "printf '%s' trusted; touch canary"
    # When it runs, the value ran as code: that is what raw means
    result = _run(bound, tmp_path)
    assert result.stdout == b"trusted"
    assert (tmp_path / "canary").exists()


def test_raw_workflow_variable_is_word_split(tmp_path: Path) -> None:
    scope = Scope(job_id="j", env={"FILES": "a b c"})
    result = _run(bind_shell("printf '<%s>' ${raw:FILES} $FILES", scope), tmp_path)
    assert result.stdout == b"<a><b><c><a b c>"


def test_escaped_dollar_stays_literal(tmp_path: Path) -> None:
    bound = bind_shell("printf '%s|' \\${item.v} \"\\${item.v}\"", _scope("value"))
    assert bound.env == {}
    assert _run(bound, tmp_path).stdout == b"${item.v}|${item.v}|"


def test_placeholders_in_comments_are_left_alone(tmp_path: Path) -> None:
    # a missing field in a comment is not an error: the shell never reads it
    bound = bind_shell("echo hi # uses ${item.nope} and ${item.v}\necho bye", _scope("v"))
    assert bound.script == "echo hi # uses ${item.nope} and ${item.v}\necho bye"
    assert _run(bound, tmp_path).stdout == b"hi\nbye\n"


def test_a_hash_inside_a_word_is_not_a_comment(tmp_path: Path) -> None:
    bound = bind_shell("printf '%s' a#${item.v}", _scope("; touch canary"))
    assert _run(bound, tmp_path).stdout == b"a#; touch canary"


def test_nul_byte_cannot_be_bound() -> None:
    with pytest.raises(InterpolationError, match=r"\$\{item\.v\}.*NUL"):
        bind_shell("echo ${item.v}", _scope("a\0b"))


def test_value_that_cannot_be_encoded_cannot_be_bound() -> None:
    # json.loads('"\\ud800"') gives a lone surrogate, which no command can receive
    with pytest.raises(InterpolationError, match="cannot be encoded"):
        bind_shell("echo ${item.v}", _scope("a\ud800"))


def test_arithmetic_takes_only_integers(tmp_path: Path) -> None:
    bound = bind_shell("echo $(( ${item.v} + 1 ))", _scope(41))
    assert _run(bound, tmp_path).stdout == b"42\n"
    with pytest.raises(InterpolationError, match="integer"):
        bind_shell("echo $(( ${item.v} + 1 ))", _scope("a[$(touch canary)]"))


def test_quoted_heredoc_with_an_odd_delimiter_refuses_values() -> None:
    with pytest.raises(InterpolationError, match="plain word"):
        bind_shell("cat <<'E O F'\n${item.v}\nE O F\n", _scope("v"))
    # without a placeholder inside, nothing needs rewriting
    template = "cat <<'E O F'\n$x\nE O F\n"
    assert bind_shell(template, _scope("v")).script == template


def test_quoted_heredoc_keeps_its_literal_text(tmp_path: Path) -> None:
    template = "cat <<'EOF'\n$HOME `x` \\n ${HOME} ${item.v}\nEOF\necho after"
    result = _run(bind_shell(template, _scope("$(touch canary)")), tmp_path)
    assert result.stdout == b"$HOME `x` \\n ${HOME} $(touch canary)\nafter\n"
    assert list(tmp_path.iterdir()) == []


def test_two_heredocs_on_one_line(tmp_path: Path) -> None:
    template = "cat <<A; cat <<'B'\n1 ${item.v}\nA\n2 ${item.v}\nB\necho done"
    result = _run(bind_shell(template, _scope("EOF\nB\nA")), tmp_path)
    assert result.stdout == b"1 EOF\nB\nA\n2 EOF\nB\nA\ndone\n"


def test_heredoc_inside_command_substitution(tmp_path: Path) -> None:
    template = 'x="$(cat <<EOF\n[${item.v}]\nEOF\n)"\nprintf \'%s\' "$x"'
    result = _run(bind_shell(template, _scope("'\"; touch canary")), tmp_path)
    assert result.stdout == b"['\"; touch canary]"
    assert list(tmp_path.iterdir()) == []


def test_here_string_is_not_a_heredoc(tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    bound = bind_shell("cat <<< ${item.v}\necho ${item.v}", _scope("a b"))
    assert _run(bound, tmp_path, bash).stdout == b"a b\na b\n"


def test_ansi_c_quotes_are_treated_like_single_quotes() -> None:
    bound = bind_shell("printf '%s' $'x${item.v}y'", _scope("v"))
    assert bound.script == "printf '%s' $'x'\"${MAPWISE_V0}\"'y'"


def test_same_placeholder_shares_one_variable_and_names_never_collide() -> None:
    scope = Scope(job_id="j", item={"v": "1"}, env={"MAPWISE_V0": "user's"})
    bound = bind_shell("echo ${item.v} ${item.v} $MAPWISE_V0", scope)
    assert bound.script == 'echo "${MAPWISE_V1}" "${MAPWISE_V1}" "${MAPWISE_V2}"'
    assert bound.env == {"MAPWISE_V1": "1", "MAPWISE_V2": "user's"}


def test_unresolvable_item_field_is_an_error() -> None:
    with pytest.raises(InterpolationError, match=r"\$\{item\.nope\}.*'item-1'"):
        bind_shell("echo '${item.nope}'", _scope("v"))


_FRAGMENTS = [
    "${item.v}",
    "${item.w}",
    "$DIR",
    "${raw:DIR}",
    "${HOME}",
    "'",
    '"',
    "\\",
    "$(",
    "$((",
    ")",
    "(",
    "`",
    "${x:-",
    "}",
    "<<EOF\n",
    "<<-'EOF'\n",
    '<<"E"\n',
    "EOF\n",
    "E\n",
    "\tEOF\n",
    "#",
    " ",
    "\n",
    ";",
    "$'",
    "$$",
    "$1",
    "printf '%s' ",
    "a",
    "=",
    "<<<",
]


def _bind_or_none(template: str, scope: Scope) -> BoundShell | None:
    try:
        return bind_shell(template, scope)
    except InterpolationError as exc:
        assert "$((...))" in str(exc)
        return None


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.sampled_from(_FRAGMENTS), max_size=25),
    first=_VALUES,
    second=_VALUES,
)
def test_the_script_never_depends_on_item_values(parts: list[str], first: str, second: str) -> None:
    # Given any template (shell syntax or not) and two different items
    template = "".join(parts)
    env = {"DIR": "d"}
    scopes = [
        Scope(job_id="j", env=env, item={"v": value, "w": "7"}, item_id="i")
        for value in (first, second)
    ]
    # When both are bound (arithmetic may refuse a non-integer: that is not this test)
    bound = [_bind_or_none(template, scope) for scope in scopes]
    if bound[0] is None or bound[1] is None:
        return
    # Then the scripts are the same text: values live only in the environment
    assert bound[0].script == bound[1].script
    assert bound[0].env.keys() == bound[1].env.keys()
