"""Workflow ``env:`` expansion in real runs through the CLI (issue 13, point 4)."""

from __future__ import annotations

from helpers.project import Project, mapreduce

ENV = {
    "PATH": "/custom/bin:${PATH}",
    "BASE": "/srv",
    "DERIVED": "${BASE}/data",
    "TOKEN": "${GITHUB_TOKEN}",
}


def test_env_values_expand_and_commands_see_them(project: Project) -> None:
    # Given prodigy's PATH example, a derived value and a token from the environment
    template = [
        "ls / > /dev/null",
        'echo "$PATH|${DERIVED}|$TOKEN|${env.HOME}|${env.DERIVED}" > out-${item}',
    ]
    project.workflow(mapreduce(template, env=ENV, max_parallel="${MAX_WORKERS}"), items=["a"])

    # When it runs with the token and the parallelism in the environment
    done = project.run_cli(env={"GITHUB_TOKEN": "tok", "MAX_WORKERS": "3", "HOME": "/home/me"})

    # Then ls is found, and every value is expanded
    assert done.returncode == 0, done.stderr
    path, derived, token, home, derived_env = project.read("out-a").strip().split("|")
    assert path.startswith("/custom/bin:") and len(path) > len("/custom/bin:")
    assert (derived, token, home, derived_env) == ("/srv/data", "tok", "/home/me", "/srv/data")


def test_max_parallel_comes_from_the_environment(project: Project) -> None:
    # Given max_parallel: ${MAX_WORKERS} that the workflow env does not define
    project.workflow(mapreduce(["true"], max_parallel="${MAX_WORKERS}"), items=["a"])

    # When the environment sets it to 0, the run refuses it
    refused = project.run_cli(env={"MAX_WORKERS": "0"})
    assert refused.returncode == 2
    assert "at least 1" in refused.stderr

    # And with a number it runs
    assert project.run_cli(env={"MAX_WORKERS": "2"}).returncode == 0


def test_a_variable_only_under_profiles_is_explained(project: Project) -> None:
    # Given a ${X} that only prodigy's profiles set
    workflow = mapreduce(['echo "[${ONLY_IN_PROFILE}]" > out-${item}'], env={"A": "a"})
    workflow["profiles"] = {"dev": {"ONLY_IN_PROFILE": "1"}}
    project.workflow(workflow, items=["a"])

    # When it is validated and run
    checked = project.cli("validate", str(project.workflow_path))
    done = project.run_cli()

    # Then both say that profiles are not applied, and the variable is empty
    message = "ONLY_IN_PROFILE is set only under profiles, which mapwise does not apply"
    assert checked.returncode == 0 and message in checked.stderr
    assert done.returncode == 0 and message in done.stderr
    assert project.read("out-a").strip() == "[]"
