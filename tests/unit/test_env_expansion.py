"""Workflow ``env:`` values expanded from earlier values and the environment (issue 13.4)."""

from __future__ import annotations

import pytest

from mapwise.envexpand import expand_env
from mapwise.interpolate import Scope, render_plain
from mapwise.workflow.loader import parse_workflow


def _workflow(env: str, template: str = "echo hi", max_parallel: str = "2", extra: str = "") -> str:
    return (
        f"name: t\nenv: {env}\n{extra}map:\n  input: items.json\n"
        f"  max_parallel: {max_parallel}\n  agent_template:\n    - shell: {template!r}\n"
    )


def test_values_expand_from_earlier_values_and_the_environment() -> None:
    env = {
        "PATH": "/custom/bin:${PATH}",
        "BASE": "/srv",
        "DERIVED": "${BASE}/data",
        "BARE": "$BASE/x",
        "TOKEN": "${GITHUB_TOKEN}",
        "HOME2": "${env.HOME}",
    }
    environ = {"PATH": "/usr/bin:/bin", "GITHUB_TOKEN": "tok", "HOME": "/home/u"}
    done = expand_env(env, environ)
    assert done.env == {
        "PATH": "/custom/bin:/usr/bin:/bin",
        "BASE": "/srv",
        "DERIVED": "/srv/data",
        "BARE": "/srv/x",
        "TOKEN": "tok",
        "HOME2": "/home/u",
    }
    assert done.unset == ()


def test_an_unset_name_is_empty_like_a_shell_and_is_reported() -> None:
    done = expand_env({"A": "x-${NOPE}-y", "LATER": "${B}", "B": "b"}, {})
    assert done.env == {"A": "x--y", "LATER": "", "B": "b"}  # only earlier values count
    assert done.unset == (("A", "NOPE"), ("LATER", "B"))


def test_shell_forms_and_item_placeholders_are_left_as_written() -> None:
    text = "$$ $1 ${X:-d} ${item.a}"
    assert expand_env({"V": text}, {"X": "x"}).env == {"V": text}


def test_env_dot_name_reads_the_workflow_env_then_the_process_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOME", "/home/proc")
    monkeypatch.delenv("MAPWISE_TEST_NOPE", raising=False)
    assert render_plain("${env.HOME}", Scope(job_id="j")) == "/home/proc"
    assert render_plain("${env.HOME}", Scope(job_id="j", env={"HOME": "/wf"})) == "/wf"
    assert render_plain("[${env.MAPWISE_TEST_NOPE}]", Scope(job_id="j")) == "[]"


def test_max_parallel_resolves_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_WORKERS", "5")
    loaded = parse_workflow(_workflow("{A: a}", max_parallel="${MAX_WORKERS}"), path="w.yml")
    assert loaded.workflow.resolved_max_parallel() == 5
    assert loaded.workflow.resolved_max_parallel({"MAX_WORKERS": "7"}) == 7
    inner = parse_workflow(
        _workflow("{MAX_WORKERS: '3'}", max_parallel="$MAX_WORKERS"), path="w.yml"
    )
    assert inner.workflow.resolved_max_parallel() == 3  # the workflow env comes first


def test_validate_warns_about_unset_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAPWISE_TEST_NOPE", raising=False)
    text = _workflow("{A: '${MAPWISE_TEST_NOPE}/x'}", template="echo ${env.MAPWISE_TEST_NOPE}")
    warnings = "\n".join(parse_workflow(text, path="w.yml").warnings)
    assert "env.A: ${MAPWISE_TEST_NOPE} is set neither earlier in env nor in the environment" in (
        warnings
    )
    assert "${env.MAPWISE_TEST_NOPE}: MAPWISE_TEST_NOPE is set nowhere; it is empty" in warnings


def test_a_name_set_only_under_profiles_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONLY_PROFILE", raising=False)
    profiles = "profiles:\n  dev:\n    ONLY_PROFILE: '4'\n    description: d\n"
    text = _workflow("{A: a}", template="echo ${ONLY_PROFILE}", extra=profiles)
    warnings = "\n".join(parse_workflow(text, path="w.yml").warnings)
    assert "ONLY_PROFILE is set only under profiles, which mapwise does not apply" in warnings
    bad = _workflow("{A: a}", max_parallel="${ONLY_PROFILE}", extra=profiles)
    with pytest.raises(Exception, match="set only under profiles, which mapwise does not apply"):
        parse_workflow(bad, path="w.yml")
