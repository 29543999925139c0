"""Worktree jobs end to end: real repositories, the real command line in a subprocess.

Each test makes a job with ``workspace: worktree`` in the checkout of the ``repo``
fixture (a folder whose name has a space and an accent), runs it with
``python -m mapwise run``, and checks with plain git what the job left: the items' commits
and one merge per item on ``mapwise/<job>/result``, no item branch or worktree after a
completed job, a DLQ item's branch and worktree kept, and the user's own checkout as it
was. Where a test needs items to run at the same time, the items meet at a rendezvous
(each waits until the others have started) instead of relying on timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.project import KILL_GRACE, CliRun
from helpers.worktrees import (
    Checkout,
    RepoProject,
    changed_files,
    commit_file,
    conflict_files,
    error_kinds,
    files_at,
    fsck,
    git,
    git_ok,
    item_branches,
    item_commits,
    item_worktrees,
    job_branch,
    merged_items,
    show,
    worktree_workflow,
    worktrees,
)

JOB = "J"
RENDEZVOUS_LIMIT = 1500  # polls of 0.02 s: a lost rendezvous fails the item, never hangs


@pytest.fixture
def project(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RepoProject:
    """The ``repo`` checkout as the project folder; the job's state outside it."""
    monkeypatch.chdir(repo)
    monkeypatch.delenv("MAPWISE_STATE_DIR", raising=False)
    monkeypatch.setenv("MAPWISE_KILL_GRACE", KILL_GRACE)
    return RepoProject(repo, tmp_path / "state")


@pytest.fixture
def meet(tmp_path: Path) -> Path:
    """A folder outside the repository where items leave notes and meet."""
    folder = tmp_path / "rendezvous"
    folder.mkdir()
    return folder


def rendezvous(count: int) -> str:
    """Shell: note this item as started in ``$R`` and wait until ``count`` items have."""
    return (
        ': > "$R/started-$MAPWISE_ITEM_INDEX"; n=0; '
        f'until [ "$(ls "$R" | grep -c "^started-")" -ge {count} ]; do '
        f"n=$((n + 1)); [ $n -lt {RENDEZVOUS_LIMIT} ] || exit 97; sleep 0.02; done"
    )


def assert_completed(project: RepoProject, done: CliRun) -> None:
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert project.db(JOB).job()["status"] == "completed"


def assert_nothing_left(project: RepoProject) -> None:
    """No item branch or item worktree of the job, the job worktree on the job branch."""
    repo = project.repo
    assert item_branches(repo, JOB) == []
    assert item_worktrees(repo, project.pool(JOB)) == []
    assert worktrees(repo)[project.job_worktree(JOB).resolve()] == job_branch(JOB)


# -- isolation -------------------------------------------------------------------------


def test_parallel_items_each_work_alone_in_their_own_worktree(
    project: RepoProject, meet: Path
) -> None:
    # Given 8 items on 4 slots, each writing the same file name (shared.txt) with its own
    # content and a file of its own; the first four meet before reading shared.txt back,
    # so in one shared folder at least three of them would read another item's content
    ids = [f"i{n}" for n in range(1, 9)]
    template = (
        'printf "%s\\n" "${item.id}" > shared.txt; '
        'printf "%s\\n" "${item.id}" > "out-${item.id}.txt"; '
        'printf "%s\\n%s\\n%s\\n" "$MAPWISE_BRANCH" "$MAPWISE_WORKTREE" "$(pwd -P)" '
        '> "$R/env-${item.id}"; '
        f"{rendezvous(4)}; "
        'seen=$(cat shared.txt); [ "$seen" = "${item.id}" ] || '
        '{ echo "shared.txt changed under me: $seen" >&2; exit 1; }; '
        "rm shared.txt"
    )
    project.workflow(
        worktree_workflow([template], env={"R": str(meet)}, max_parallel=4),
        items=[{"id": i} for i in ids],
    )
    before = Checkout.of(project.repo)

    # When the job runs
    done = project.run_job(JOB)

    # Then every item read back its own shared.txt, and every item was merged once
    assert_completed(project, done)
    repo = project.repo
    assert sorted(merged_items(repo, JOB)) == sorted(ids)
    commits = item_commits(repo, JOB)
    assert sorted(commits) == sorted(ids)
    for item_id in ids:
        # Each item's one commit holds its own file and nothing of the others
        (commit,) = commits[item_id]
        assert changed_files(repo, commit) == [f"out-{item_id}.txt"]
        assert show(repo, commit, f"out-{item_id}.txt") == f"{item_id}\n"
        # And its commands ran in its worktree, on its branch
        branch, worktree, cwd = (meet / f"env-{item_id}").read_text().splitlines()
        assert branch == f"mapwise/{JOB}/item/{item_id}"
        assert Path(worktree).resolve() == Path(cwd)
        assert Path(cwd).parent == project.pool(JOB).resolve()
    on_branch = files_at(repo, job_branch(JOB))
    assert {f"out-{i}.txt" for i in ids} <= set(on_branch)
    assert "shared.txt" not in on_branch
    # And nothing of the items is left, and the user's checkout is as it was
    assert_nothing_left(project)
    assert Checkout.of(repo) == before
    verified = project.inspect("verify", JOB)
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- the user's checkout ---------------------------------------------------------------


def test_the_users_dirty_checkout_index_stash_and_branch_are_untouched(
    project: RepoProject,
) -> None:
    # Given a checkout on a branch of the user's own, with a stash, a staged change, an
    # unstaged change to a tracked file and an untracked file
    repo = project.repo
    git(repo, "switch", "--quiet", "-c", "feature")
    (repo / "notes" / "ü file.txt").write_text("stashed work\n")
    git(repo, "stash", "push", "--quiet", "-m", "my stash")
    (repo / "src" / "app.py").write_text("print('staged')\n")
    git(repo, "add", "src/app.py")
    (repo / "src" / "app.py").write_text("print('staged, then edited')\n")
    (repo / "README.md").write_text("# demo\nmy uncommitted edit\n")
    (repo / "scratch.txt").write_text("untracked\n")
    # And a job whose setup, items and reduce all write and commit in their worktrees
    project.workflow(
        worktree_workflow(
            [
                'echo "${item.id}" > README.md; echo "${item.id}" > "item-${item.id}.txt"',
                "git add -A && git commit --quiet -m 'agent commit'",
                'echo more > "more-${item.id}.txt"',
            ],
            setup=["echo setup > setup.txt && git add setup.txt && git commit -qm setup"],
            reduce=["echo reduce > reduce.txt"],
            max_parallel=2,
            on_conflict="dlq",
        ),
        items=[{"id": "a"}],
    )
    before = Checkout.of(repo)
    assert before.stash and before.staged and before.status

    # When the job runs
    done = project.run_job(JOB)

    # Then the job did its work on its own branch
    assert_completed(project, done)
    on_branch = set(files_at(repo, job_branch(JOB)))
    assert {"setup.txt", "item-a.txt", "more-a.txt"} <= on_branch
    assert show(repo, job_branch(JOB), "README.md") == "a\n"
    assert (project.job_worktree(JOB) / "reduce.txt").read_text() == "reduce\n"
    # And the user's status, HEAD, branch, index, stash and every file are as they were
    after = Checkout.of(repo)
    assert after.status == before.status
    assert after.head == before.head
    assert after.branch == before.branch == "feature"
    assert after.index == before.index
    assert after.staged == before.staged
    assert after.stash == before.stash
    assert after.files == before.files
    # And none of the user's uncommitted work went into the job's branch
    assert "scratch.txt" not in on_branch
    assert show(repo, job_branch(JOB), "src/app.py") == "print('hello')\n"


# -- conflicts -------------------------------------------------------------------------


def conflicting_template() -> str:
    """Both items start from the same head (they meet first), then append a line of their
    own to the tracked ``log.txt``: the second to merge conflicts. What the attempt saw
    of ``log.txt`` is kept in ``$R/seen-<id>-<attempt>``."""
    return (
        f"{rendezvous(2)}; "
        'cp log.txt "$R/seen-${item.id}-$MAPWISE_ATTEMPT"; '
        'echo "line ${item.id}" >> log.txt'
    )


def conflicting_job(project: RepoProject, meet: Path, *, on_conflict: str) -> Path:
    """Two items on two slots that append to the same tracked ``log.txt`` (two attempts
    each); the repository."""
    repo = project.repo
    commit_file(repo, "log.txt", "base\n", "a log")
    project.workflow(
        worktree_workflow(
            [conflicting_template()],
            env={"R": str(meet)},
            max_parallel=2,
            retry={"max_attempts": 2, "initial_delay": 0},
            on_conflict=on_conflict,
        ),
        items=[{"id": "a"}, {"id": "b"}],
    )
    return repo


def test_a_conflict_under_rerun_reruns_the_item_from_the_new_head(
    project: RepoProject, meet: Path
) -> None:
    # Given a tracked log.txt, and two items on two slots that both append to it
    repo = conflicting_job(project, meet, on_conflict="rerun")

    # When the job runs
    done = project.run_job(JOB)

    # Then both items are merged, the second after a rerun
    assert_completed(project, done)
    first, second = merged_items(repo, JOB)
    assert {first, second} == {"a", "b"}
    assert error_kinds(project, JOB, first) == [None]
    assert error_kinds(project, JOB, second) == ["merge_conflict", None]
    outcomes = [a["outcome"] for a in project.db(JOB).attempts(second)]
    assert outcomes == ["failed", "succeeded"]
    # And the rerun started from the job branch's new head, holding the first item's line
    assert (meet / f"seen-{second}-1").read_text() == "base\n"
    assert (meet / f"seen-{second}-2").read_text() == f"base\nline {first}\n"
    # And both lines are on the job branch, each item's work once
    assert show(repo, job_branch(JOB), "log.txt") == f"base\nline {first}\nline {second}\n"
    assert {k: len(v) for k, v in item_commits(repo, JOB).items()} == {"a": 1, "b": 1}
    assert_nothing_left(project)


def test_a_conflict_under_dlq_keeps_the_items_branch_and_worktree(
    project: RepoProject, meet: Path
) -> None:
    # Given the same two conflicting items, with on_conflict: dlq
    repo = conflicting_job(project, meet, on_conflict="dlq")

    # When the job runs
    done = project.run_job(JOB)

    # Then it fails: one item is merged, the other is in the DLQ at its first attempt
    assert done.returncode == 1, done.stdout + done.stderr
    (merged,) = merged_items(repo, JOB)
    (lost,) = {"a", "b"} - {merged}
    dlq = project.dlq_json(JOB)
    assert [entry["item_id"] for entry in dlq] == [lost]
    assert error_kinds(project, JOB, lost) == ["merge_conflict"]
    # And its conflicting file is recorded
    assert conflict_files(project, JOB, lost) == ["log.txt"]
    # And its branch is kept, with its commit, and so is its worktree
    branch = f"mapwise/{JOB}/item/{lost}"
    assert item_branches(repo, JOB) == [branch]
    assert git(repo, "log", "-1", "--format=%s", branch).strip() == f"mapwise: {lost}"
    assert show(repo, branch, "log.txt") == f"base\nline {lost}\n"
    (kept,) = [path for path, on in worktrees(repo).items() if on == branch]
    assert kept in item_worktrees(repo, project.pool(JOB))
    assert (kept / "log.txt").read_text() == f"base\nline {lost}\n"
    # And the job branch holds the merged item's line only
    assert show(repo, job_branch(JOB), "log.txt") == f"base\nline {merged}\n"


# -- commits -----------------------------------------------------------------------------


def test_commit_required_without_a_commit_fails_with_no_commit(project: RepoProject) -> None:
    # Given a step with commit_required that changes a file but does not commit
    project.workflow(
        worktree_workflow([{"shell": 'echo "${item.id}" > made.txt', "commit_required": True}]),
        items=[{"id": "a"}],
    )

    # When the job runs
    done = project.run_job(JOB)

    # Then the step failed with no_commit and the item is in the DLQ, nothing merged
    assert done.returncode == 1, done.stdout + done.stderr
    assert error_kinds(project, JOB, "a") == ["no_commit"]
    assert [entry["item_id"] for entry in project.dlq_json(JOB)] == ["a"]
    assert merged_items(project.repo, JOB) == []
    assert "made.txt" not in files_at(project.repo, job_branch(JOB))


def test_commit_required_with_the_steps_own_commit_succeeds(project: RepoProject) -> None:
    # Given a step with commit_required that commits by itself, as an agent would
    project.workflow(
        worktree_workflow(
            [
                {
                    "shell": 'echo "${item.id}" > made.txt && git add made.txt && '
                    'git commit --quiet -m "agent: ${item.id}"',
                    "commit_required": True,
                }
            ]
        ),
        items=[{"id": "a"}],
    )

    # When the job runs
    done = project.run_job(JOB)

    # Then the item is merged with the agent's own commit, and no commit of mapwise's
    assert_completed(project, done)
    repo = project.repo
    assert merged_items(repo, JOB) == ["a"]
    assert item_commits(repo, JOB) == {}
    log = git(repo, "log", "--no-merges", "--format=%s", f"{job_branch(JOB)}~1..{job_branch(JOB)}")
    assert log.splitlines() == ["agent: a"]
    assert show(repo, job_branch(JOB), "made.txt") == "a\n"
    assert_nothing_left(project)


def test_an_item_without_changes_succeeds_without_a_merge(project: RepoProject) -> None:
    # Given one item that writes a file, one that changes nothing, and one that writes
    # only a file git ignores
    project.workflow(
        worktree_workflow(
            [
                '[ "${item.id}" != changes ] || echo x > new.txt; '
                '[ "${item.id}" != ignored ] || echo x > debug.log; true'
            ],
            max_parallel=3,
        ),
        items=[{"id": "changes"}, {"id": "nothing"}, {"id": "ignored"}],
    )
    base = git(project.repo, "rev-parse", "HEAD").strip()

    # When the job runs
    done = project.run_job(JOB)

    # Then all three succeed, and only the item with a change is merged
    assert_completed(project, done)
    repo = project.repo
    assert project.db(JOB).item_ids_with("succeeded") == {"changes", "nothing", "ignored"}
    assert merged_items(repo, JOB) == ["changes"]
    assert list(item_commits(repo, JOB)) == ["changes"]
    assert git(repo, "rev-parse", f"{job_branch(JOB)}^1").strip() == base
    assert_nothing_left(project)


# -- hostile ids -------------------------------------------------------------------------

HOSTILE_IDS = [
    "a-b-2",  # a plain name equal to the name "a-b" of item 2 gets when it collides
    "a b",  # "a b" and "a-b" both make the ref name a-b
    "a-b",
    "../x",
    "a..b",
    "@{u}",
    "with space",
    "x" * 300,
    "ünï",
    "Case",  # a case-insensitive file system holds one loose ref for both
    "case",
    "-lead.lock",
    ".hidden/",
    "HEAD",
    "~^:?*[\\",
]


def test_hostile_item_ids_make_valid_distinct_branches(project: RepoProject, meet: Path) -> None:
    # Given items whose ids git could not take as branch names, or that map to one name;
    # the first four run at once (they meet), so no two of them may share a branch
    items = [{"id": item_id, "n": n} for n, item_id in enumerate(HOSTILE_IDS)]
    project.workflow(
        worktree_workflow(
            [
                'printf "%s" "$MAPWISE_ITEM_ID" > "f-${item.n}.txt"; '
                'printf "%s\\n" "$MAPWISE_BRANCH" > "$R/branch-${item.n}"; '
                f"{rendezvous(4)}"
            ],
            env={"R": str(meet)},
            max_parallel=4,
        ),
        items=items,
    )

    # When the job runs
    done = project.run_job(JOB)

    # Then it completes, with one merge per item, each item's work on the job branch
    assert_completed(project, done)
    repo = project.repo
    assert sorted(merged_items(repo, JOB)) == sorted(HOSTILE_IDS)
    for n, item_id in enumerate(HOSTILE_IDS):
        assert show(repo, job_branch(JOB), f"f-{n}.txt") == item_id
    # And every item had a valid branch of its own under the job's prefix
    branches = [(meet / f"branch-{n}").read_text().strip() for n in range(len(HOSTILE_IDS))]
    assert len({b.lower() for b in branches}) == len(HOSTILE_IDS)
    for branch in branches:
        assert branch.startswith(f"mapwise/{JOB}/item/")
        assert git_ok(repo, "check-ref-format", "--branch", branch), branch
        assert "/" not in branch.removeprefix(f"mapwise/{JOB}/item/")
    assert_nothing_left(project)


# -- status, dlq show, clean ---------------------------------------------------------------


def run_into_dlq(project: RepoProject, meet: Path) -> tuple[str, str]:
    """A job of three items under ``on_conflict: dlq``: ``a`` and ``b`` append to the
    tracked ``log.txt`` from the same head (one is merged, the other conflicts and goes to
    the DLQ), ``c`` changes nothing. Returns (the merged item, the item in the DLQ)."""
    commit_file(project.repo, "log.txt", "base\n", "a log")
    project.workflow(
        worktree_workflow(
            [f'[ "${{item.id}}" = c ] || {{ {conflicting_template()}; }}'],
            env={"R": str(meet)},
            max_parallel=2,
            on_conflict="dlq",
        ),
        items=[{"id": "a"}, {"id": "b"}, {"id": "c"}],
    )
    done = project.run_job(JOB)
    assert done.returncode == 1, done.stdout + done.stderr
    (merged,) = merged_items(project.repo, JOB)
    (lost,) = {"a", "b"} - {merged}
    return merged, lost


def test_status_json_shows_the_workspace_and_each_items_merge_state(
    project: RepoProject, meet: Path
) -> None:
    # Given a job with a merged item, an item in the DLQ after a conflict, and an item
    # that had nothing to merge
    merged, lost = run_into_dlq(project, meet)

    # When its status is asked for in JSON, with the items
    status = project.inspect("status", JOB, "--json", "--items")

    # Then it names the repository, the job branch and the job worktree
    assert status.returncode == 0, status.stdout + status.stderr
    shown = status.json()
    workspace = shown["workspace"]
    assert Path(workspace["repo"]).resolve() == project.repo.resolve()
    assert workspace["job_branch"] == job_branch(JOB)
    assert Path(workspace["job_worktree"]).resolve() == project.job_worktree(JOB).resolve()
    # And each item's branch and merge state
    items = {item["item_id"]: item for item in shown["items"]}
    assert items[merged]["branch"] == f"mapwise/{JOB}/item/{merged}"
    assert items[merged]["merge"] == "merged"
    assert items[lost]["branch"] == f"mapwise/{JOB}/item/{lost}"
    assert items[lost]["merge"] == "conflict"
    assert items["c"]["merge"] == "nothing to merge"


def test_dlq_show_gives_the_branch_worktree_and_conflicting_files(
    project: RepoProject, meet: Path
) -> None:
    # Given an item in the DLQ after a conflict
    _, lost = run_into_dlq(project, meet)

    # When the DLQ shows it
    shown = project.inspect("dlq", "show", JOB, lost)

    # Then it gives its branch, its worktree (which exists) and the conflicting file
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = [line.strip() for line in shown.stdout.splitlines()]
    assert f"branch: mapwise/{JOB}/item/{lost}" in lines
    (worktree_line,) = [line for line in lines if line.startswith("worktree: ")]
    worktree = Path(worktree_line.removeprefix("worktree: "))
    assert worktree.resolve() in item_worktrees(project.repo, project.pool(JOB))
    assert (worktree / "log.txt").read_text() == f"base\nline {lost}\n"
    assert "conflicting files: log.txt" in lines


def test_clean_refuses_unmerged_work_without_force(project: RepoProject, meet: Path) -> None:
    # Given an item in the DLQ whose branch holds a commit not on the job branch
    merged, lost = run_into_dlq(project, meet)
    repo = project.repo
    branch = f"mapwise/{JOB}/item/{lost}"
    (kept,) = item_worktrees(repo, project.pool(JOB))

    # When the job is cleaned without --force
    refused = project.cli("clean", JOB, "--state-dir", str(project.state_dir))

    # Then it says what it kept and why, exits 1, and removes nothing of the item
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"kept {lost}" in refused.stdout
    assert "--force" in refused.stdout
    assert item_branches(repo, JOB) == [branch]
    assert item_worktrees(repo, project.pool(JOB)) == [kept]

    # When it is cleaned with --force
    forced = project.cli("clean", JOB, "--force", "--state-dir", str(project.state_dir))

    # Then the item's branch and worktree are gone, the job's branch and work stay
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert item_branches(repo, JOB) == []
    assert item_worktrees(repo, project.pool(JOB)) == []
    assert not kept.exists()
    assert show(repo, job_branch(JOB), "log.txt") == f"base\nline {merged}\n"
    assert project.job_worktree(JOB).is_dir()  # the item is still in the DLQ

    # When the DLQ is purged and the job cleaned again
    purged = project.cli("dlq", "purge", JOB, "--state-dir", str(project.state_dir))
    again = project.cli("clean", JOB, "--state-dir", str(project.state_dir))

    # Then the job's worktree goes too, and its branch, the result, stays
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert again.returncode == 0, again.stdout + again.stderr
    assert not project.job_worktree(JOB).exists()
    assert project.job_worktree(JOB).resolve() not in worktrees(repo)
    assert git_ok(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{job_branch(JOB)}")
    checked = fsck(repo)
    assert checked.returncode == 0, checked.stderr


def test_clean_keeps_uncommitted_work_of_a_failed_item(project: RepoProject) -> None:
    # Given an item that wrote a file, then failed: its work is uncommitted in its worktree
    project.workflow(worktree_workflow(["echo draft > draft.txt; exit 3"]), items=[{"id": "a"}])
    done = project.run_job(JOB)
    assert done.returncode == 1, done.stdout + done.stderr
    (kept,) = item_worktrees(project.repo, project.pool(JOB))
    assert (kept / "draft.txt").read_text() == "draft\n"

    # When the job is cleaned without --force
    refused = project.cli("clean", JOB, "--state-dir", str(project.state_dir))

    # Then the worktree and its draft are kept, and the reason is given
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "kept a: its worktree has uncommitted changes" in refused.stdout
    assert (kept / "draft.txt").read_text() == "draft\n"
