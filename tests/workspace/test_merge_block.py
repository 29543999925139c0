"""prodigy's ``merge:`` block in worktree mode: real repositories, the real command line.

The block runs once, after reduce, at the end of a completed worktree job, in the job
worktree, with ``${merge.source_branch}``, ``${merge.target_branch}``,
``${merge.worktree}`` and ``${merge.session_id}``; its steps are recorded like reduce's,
so a failed step fails the job and a resume continues at that step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.project import KILL_GRACE
from helpers.worktrees import RepoProject, git, job_branch, merged_items, worktree_workflow

JOB = "J"


@pytest.fixture
def project(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RepoProject:
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    monkeypatch.setenv("MAPWISE_KILL_GRACE", KILL_GRACE)
    return RepoProject(repo, tmp_path / "state")


def _workflow(out: Path, merge: object, **options: object) -> dict[str, object]:
    workflow = worktree_workflow(
        ['echo "${item.id}" > "${item.id}.txt"'],
        reduce=[f'echo reduce >> "{out}"'],
        env={"OUT": str(out)},
        **options,
    )
    if isinstance(merge, list):
        merge = [{"shell": s} if isinstance(s, str) else s for s in merge]
    workflow["merge"] = merge
    return workflow


def test_list_form_runs_after_reduce_in_the_job_worktree(
    project: RepoProject, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    merge = [
        'echo "merge ${merge.source_branch} ${merge.target_branch} ${merge.session_id}" >> "$OUT"',
        'echo "worktree ${merge.worktree}" >> "$OUT"',
        'echo "pwd $(pwd -P)" >> "$OUT"',
    ]
    project.workflow(_workflow(out, merge), items=[{"id": "a"}, {"id": "b"}])
    done = project.run_job(JOB)
    assert done.returncode == 0, done.stderr
    worktree = project.job_worktree(JOB).resolve()
    assert out.read_text().splitlines() == [
        "reduce",
        f"merge {job_branch(JOB)} main {JOB}",
        f"worktree {worktree}",
        f"pwd {worktree}",
    ]
    assert git(project.repo, "branch", "--show-current").strip() == "main"


def test_mapping_form_is_the_authors_explicit_merge(project: RepoProject, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    repo = project.repo.resolve()
    merge = {
        "commands": [
            {"shell": f'git -C "{repo}" merge --quiet --no-edit ${{merge.source_branch}}'},
        ],
        "timeout": 60,
    }
    project.workflow(_workflow(out, merge), items=[{"id": "a"}, {"id": "b"}])
    done = project.run_job(JOB)
    assert done.returncode == 0, done.stderr
    assert sorted(merged_items(project.repo, JOB)) == ["a", "b"]
    assert (project.repo / "a.txt").read_text() == "a\n"  # main now has the job's work
    assert git(project.repo, "merge-base", "--is-ancestor", job_branch(JOB), "main") == ""


def test_a_failed_merge_step_fails_the_job_and_resume_continues_it(
    project: RepoProject, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    flag = tmp_path / "flag"
    merge = [
        'echo first >> "$OUT"',
        f'test -e "{flag}" && echo second >> "$OUT"',
    ]
    project.workflow(_workflow(out, merge), items=[{"id": "a"}])
    failed = project.run_job(JOB)
    assert failed.returncode == 1, failed.stderr
    assert out.read_text().splitlines() == ["reduce", "first"]
    status = project.inspect("status", JOB, "--json")
    assert status.json()["status"] == "failed"
    assert status.json()["phase"] == "merge"
    flag.touch()
    resumed = project.cli("resume", JOB, "--state-dir", str(project.state_dir))
    assert resumed.returncode == 0, resumed.stderr
    # reduce and the merge step that succeeded are not run again
    assert out.read_text().splitlines() == ["reduce", "first", "second"]
    assert project.inspect("status", JOB, "--json").json()["status"] == "completed"


def test_without_worktree_the_merge_block_is_warned_and_not_run(
    project: RepoProject, tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    workflow = _workflow(out, ['echo merge >> "$OUT"'])
    del workflow["workspace"]
    project.workflow(workflow, items=[{"id": "a"}])
    checked = project.cli("validate", str(project.workflow_path))
    assert "merge:" in checked.stderr + checked.stdout
    assert "workspace: worktree" in checked.stderr + checked.stdout
    done = project.run_job(JOB)
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == ["reduce"]


def test_an_unknown_merge_variable_is_refused(project: RepoProject, tmp_path: Path) -> None:
    workflow = _workflow(tmp_path / "out.txt", ["echo ${merge.nope}"])
    project.workflow(workflow, items=[{"id": "a"}])
    checked = project.cli("validate", str(project.workflow_path))
    assert checked.returncode == 2
    assert "unknown merge variable" in checked.stderr
