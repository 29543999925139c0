"""The repository operations of worktree mode, on top of ``run_git``.

``Repo`` is what the engine asks of git: worktrees added, re-pointed to a new branch (the
fast path of a pool), rebuilt, removed and pruned; commits of what an item left; merges
checked with ``merge-tree`` before they are made; branches listed and deleted. Every write
runs under ``Repo.write_lock`` (``mapwise.workspace.locks``); every command through
``run_git`` (``mapwise.workspace.command``), whose names are re-exported here.
"""

from __future__ import annotations

import functools
import re
import shutil
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from mapwise.errors import WorkspaceError
from mapwise.workspace.command import (
    GIT_OPTIONS,
    MIN_VERSION,
    GitResult,
    failure,
    git_version,
    retrying,
    run_git,
)
from mapwise.workspace.locks import git_process_in, repo_lock

__all__ = ["GIT_OPTIONS", "MIN_VERSION", "GitResult", "Repo", "git_version", "run_git"]

FALLBACK_NAME = "mapwise"
FALLBACK_EMAIL = "mapwise@localhost"
_STALE_LOCK_AGE = 5.0  # an index.lock older than this with no git running is a leftover


class Repo:
    """One git repository (with a work tree), as worktree mode uses it.

    Writes take ``write_lock`` themselves (it is re-entrant), so a caller holds it only to
    make several operations one step. Commands that only concern the repository run in
    ``toplevel``; none of them changes the user's checkout, index or current branch.
    """

    def __init__(self, path: Path) -> None:
        """``path``: any folder inside a work tree. ``WorkspaceError`` when there is none."""
        if not path.is_dir():
            raise WorkspaceError(f"{path} is not a folder, so not a git repository")
        probe = run_git(
            ["rev-parse", "--is-bare-repository", "--is-inside-work-tree"], cwd=path, check=False
        )
        if probe.returncode != 0:
            if "not a git repository" in probe.stderr:
                raise WorkspaceError(f"{path} is not inside a git repository")
            raise WorkspaceError(f"git cannot use {path} as a repository:\n{probe.stderr.rstrip()}")
        bare, inside = [*probe.stdout.split(), "", ""][:2]
        if bare == "true":
            raise WorkspaceError(
                f"{path} is a bare repository; worktree mode needs a repository with a work tree"
            )
        if inside != "true":
            raise WorkspaceError(f"{path} is inside a .git folder, not a work tree")
        out = run_git(["rev-parse", "--show-toplevel", "--git-common-dir"], cwd=path).stdout
        toplevel, common = out.rstrip("\n").split("\n")
        self.toplevel: Path = Path(toplevel).resolve()
        self.common_dir: Path = (path / common).resolve()

    def __repr__(self) -> str:
        return f"Repo({str(self.toplevel)!r})"

    def _git(
        self, args: Sequence[str], *, cwd: Path | None = None, check: bool = True
    ) -> GitResult:
        return run_git(args, cwd=self.toplevel if cwd is None else cwd, check=check)

    def write_lock(self) -> AbstractContextManager[None]:
        """Hold the repository's write lock (threads of this process and other processes)."""
        return repo_lock(self.common_dir)

    # -- reading refs ---------------------------------------------------------------

    def rev_parse(self, ref: str) -> str | None:
        """The commit ``ref`` names, or None when it names none (unknown, unborn HEAD, a tree)."""
        args = ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]
        result = self._git(args, check=False)
        if result.returncode != 0:
            return None
        return result.stdout.strip() or None

    def branch_exists(self, name: str) -> bool:
        args = ["show-ref", "--verify", "--quiet", f"refs/heads/{name}"]
        return self._git(args, check=False).returncode == 0

    def branches_under(self, prefix: str) -> list[str]:
        """The full names of the branches whose name starts with ``prefix`` (sorted)."""
        out = self._git(["for-each-ref", "--format=%(refname)", "refs/heads/"]).stdout
        full = f"refs/heads/{prefix}"
        return sorted(r[len("refs/heads/") :] for r in out.splitlines() if r.startswith(full))

    def head(self, worktree: Path) -> str:
        """The commit checked out in ``worktree``."""
        return self._git(["rev-parse", "--verify", "HEAD"], cwd=worktree).stdout.strip()

    def is_ancestor(self, commit: str, of: str) -> bool:
        """Is ``commit`` reachable from ``of`` (already merged into it)?"""
        args = ["merge-base", "--is-ancestor", "--end-of-options", commit, of]
        result = self._git(args, check=False)
        if result.returncode not in (0, 1):
            raise failure(args, self.toplevel, result)
        return result.returncode == 0

    def unmerged_commits(self, branch: str, into: str) -> int:
        """How many commits of ``branch`` are not in ``into``."""
        args = ["rev-list", "--count", "--end-of-options", f"{into}..{branch}"]
        return int(self._git(args).stdout.strip())

    # -- worktrees -----------------------------------------------------------------

    def worktree_paths(self) -> dict[Path, str | None]:
        """Every worktree git knows of (the main one too): path -> branch, None if detached.

        Paths are as git records them, which is resolved (no symlinks): compare with
        ``Path.resolve()``. A record whose folder is gone is listed until pruned.
        """
        out = self._git(["worktree", "list", "--porcelain", "-z"]).stdout
        found: dict[Path, str | None] = {}
        for record in out.split("\0\0"):
            fields = dict(f.partition(" ")[::2] for f in record.split("\0") if f)
            if "worktree" in fields:
                branch = fields.get("branch")
                found[Path(fields["worktree"])] = (
                    branch.removeprefix("refs/heads/") if branch else None
                )
        return found

    def add_worktree(self, path: Path, branch: str, start: str) -> None:
        """Create folder ``path`` with branch ``branch`` made (or reset) at ``start``.

        A failed attempt leaves nothing behind: the half-made worktree is removed before
        a retry or the error, so the same call can simply be made again.
        """
        target = path.absolute()
        existed = target.exists()
        # the shared part (the branch, the worktree's record) under the lock; the files
        # (all of the checkout's time on a big repository) are written outside it
        args = [
            "worktree", "add", "--quiet", "--no-checkout", "--no-track",
            "-B", branch, str(target), start,
        ]  # fmt: skip

        def attempt() -> GitResult:
            result = self._git(args, check=False)
            if result.returncode != 0 and not existed and target.exists():
                self._git(["worktree", "remove", "--force", str(target)], check=False)
                shutil.rmtree(target, ignore_errors=True)
                self._git(["worktree", "prune"], check=False)
            return result

        with self.write_lock():
            result = retrying(attempt)
        if result.returncode != 0:
            raise failure(args, self.toplevel, result)
        self._git(["reset", "--quiet", "--hard"], cwd=target)

    def repoint_worktree(self, path: Path, branch: str, start: str) -> None:
        """Reuse worktree ``path`` for branch ``branch`` made (or reset) at ``start``.

        The fast path of a pool: far cheaper than removing and adding a worktree. Whatever
        the previous user left is discarded (``checkout --force`` resets the index and the
        tracked files, so no separate ``reset --hard`` is needed); untracked files go too,
        ignored ones (a virtualenv, build caches) stay. The caller has committed anything
        worth keeping on the previous branch first.
        """
        commit = self.rev_parse(start) or start
        with self.write_lock():  # only the branch's ref is shared with other worktrees
            self._git(["update-ref", f"refs/heads/{branch}", commit])
        self._git(["checkout", "--quiet", "--force", branch], cwd=path)
        self._git(["clean", "-ffdq"], cwd=path)

    def attach_worktree(self, path: Path, branch: str) -> None:
        """Rebuild worktree ``path`` of the existing ``branch`` (its folder was lost).

        Stale records are pruned first: git refuses a branch still recorded as checked out
        in a folder that is gone, and a path still recorded as a worktree.
        """
        with self.write_lock():
            self._git(["worktree", "prune"])
            self._git(["worktree", "add", "--quiet", str(path.absolute()), branch])

    def remove_worktree(self, path: Path) -> None:
        """Remove worktree ``path`` and its folder, changes and all (its branch stays)."""
        with self.write_lock():
            if path.exists():
                self._git(["worktree", "remove", "--force", "--force", str(path.absolute())])
            else:
                self._git(["worktree", "prune"])

    def prune_worktrees(self) -> None:
        """Forget the worktree records whose folder is gone (locked ones stay)."""
        with self.write_lock():
            self._git(["worktree", "prune"])

    # -- commits and merges ------------------------------------------------------------

    def is_dirty(self, worktree: Path) -> bool:
        """Has ``worktree`` changes or untracked files (ignored files do not count)?"""
        out = self._git(["status", "--porcelain", "-z", "--untracked-files=normal"], cwd=worktree)
        return bool(out.stdout)

    def _identity(self, worktree: Path) -> list[str]:
        """``-c`` options naming mapwise as author, for what the configuration lacks.

        Only what is missing is set, so a repository's ``user.name``/``user.email`` (and
        GIT_AUTHOR_*/GIT_COMMITTER_* variables, which git ranks above any config) win.
        """
        args = ["config", "--get-regexp", r"^user\.(name|email)$"]
        out = self._git(args, cwd=worktree, check=False).stdout
        have = {line.partition(" ")[0] for line in out.splitlines()}
        options: list[str] = []
        if "user.name" not in have:
            options += ["-c", f"user.name={FALLBACK_NAME}"]
        if "user.email" not in have:
            options += ["-c", f"user.email={FALLBACK_EMAIL}"]
        return options

    def commit_all(self, worktree: Path, message: str) -> str | None:
        """Commit everything in ``worktree`` (``add -A``); the new HEAD, or None if clean.

        Hooks do not run (``--no-verify``): this commit is mapwise's record of the work,
        and a hook that fails or waits would lose it. Staging writes only this worktree's
        own index, so it runs outside the repository's write lock.
        """
        self._git(["add", "--all"], cwd=worktree)
        staged = self._git(["diff", "--cached", "--quiet"], cwd=worktree, check=False)
        if staged.returncode == 0:
            return None
        if staged.returncode != 1:
            raise failure(["diff", "--cached", "--quiet"], worktree, staged)
        commit = ["commit", "--quiet", "--no-verify", "--cleanup=verbatim", "-m", message]
        with self.write_lock():
            self._git([*self._identity(worktree), *commit], cwd=worktree)
        return self.head(worktree)

    def merge_conflicts(self, into: str, other: str) -> list[str]:
        """The paths that would conflict merging ``other`` into ``into``; [] if none.

        Computed without touching any worktree (``merge-tree --write-tree``), so a merge
        that would conflict is never started.
        """
        args = ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", into, other]
        result = self._git(args, check=False)
        if result.returncode == 0:
            return []
        # Exit 1 is both "conflicts" and "cannot merge that"; only the first prints the
        # merged tree: <tree id> NUL <path> NUL <path> NUL ... NUL (then messages, if any)
        fields = result.stdout.split("\0")
        if result.returncode != 1 or not re.fullmatch(r"[0-9a-f]{40,64}", fields[0]):
            raise failure(args, self.toplevel, result)
        paths = fields[1 : fields.index("", 1)] if "" in fields[1:] else fields[1:]
        return list(dict.fromkeys(paths))

    def merge(self, worktree: Path, branch: str, message: str) -> str:
        """Merge ``branch`` into the branch of ``worktree`` as a merge commit; the new HEAD.

        On any failure the merge is undone before ``GitError`` is raised, so the worktree
        is never left half merged. Hooks do not run, as for ``commit_all``.
        """
        args = ["merge", "--no-ff", "--no-edit", "--no-verify", "--quiet", "-m", message, branch]
        with self.write_lock():
            result = self._git([*self._identity(worktree), *args], cwd=worktree, check=False)
            if result.returncode != 0:
                self._undo_merge(worktree)
                raise failure(args, worktree, result)
        return self.head(worktree)

    def _undo_merge(self, worktree: Path) -> None:
        if self._git(["merge", "--abort"], cwd=worktree, check=False).returncode != 0:
            self._git(["reset", "--hard", "--quiet", "HEAD"], cwd=worktree)

    def abort_leftover_merge(self, worktree: Path, *, discard_changes: bool = False) -> bool:
        """Undo what a killed merge left in ``worktree``; True if there was something.

        A stale ``index.lock`` (older than a few seconds, no git working there) is removed
        first, since every repair needs the index; a ``MERGE_HEAD`` is aborted (or reset
        when abort fails). A clean merge killed before it wrote ``MERGE_HEAD`` leaves only
        changed files behind: ``discard_changes`` resets tracked changes too, for a
        worktree where nothing but merges writes (the job's, during the map phase).
        """
        with self.write_lock():
            out = self._git(
                ["rev-parse", "--git-path", "index.lock", "--git-path", "MERGE_HEAD"], cwd=worktree
            )
            index_lock, merge_head = (worktree / p for p in out.stdout.rstrip("\n").split("\n"))
            did = False
            if index_lock.exists() and self._stale(index_lock, worktree):
                index_lock.unlink(missing_ok=True)
                did = True
            if merge_head.exists():
                self._undo_merge(worktree)
                did = True
            if discard_changes:
                tracked = self._git(
                    ["status", "--porcelain", "-z", "--untracked-files=no"], cwd=worktree
                )
                if tracked.stdout:
                    self._git(["reset", "--hard", "--quiet", "HEAD"], cwd=worktree)
                    did = True
            return did

    @staticmethod
    def _stale(lock: Path, worktree: Path) -> bool:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return False
        return age > _STALE_LOCK_AGE and not git_process_in(worktree.resolve())

    def delete_branch(self, name: str, *, force: bool = False) -> None:
        """Delete branch ``name``; without ``force`` git refuses one not merged into HEAD.

        HEAD here is the user's checkout, so a caller that knows where the branch was
        merged checks ``is_ancestor`` or ``unmerged_commits`` and passes ``force``.
        """
        with self.write_lock():
            self._git(["branch", "--quiet", "-D" if force else "-d", name])


@functools.cache
def repo_at(top: str) -> Repo:
    """One ``Repo`` per repository and process, for the paths mapwise calls on every item
    (an attempt's worktree, the merge queue): making one costs two git processes."""
    return Repo(Path(top))
