"""Branch names made from hostile item ids, checked by git itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mapwise.workspace.refnames import item_branches, job_branch, ref_safe

HOSTILE = [
    "../x",
    "a..b",
    "@{",
    "x@{1}",
    "@",
    "with spaces and\ttabs\n",
    "x" * 300,
    ".hidden",
    "-leading",
    "trailing.",
    "trailing.lock",
    "x.lock.lock",
    "a/b/c",
    "refs/heads/main",
    "HEAD",
    "日本語のアイテム",
    "émoji 🎉",
    "",
    "...",
    "--",
    "back\\slash",
    "ctrl\x00\x7f",
    "star*?[colon]:~^",
    "end/",
    "a" * 97 + ".lock",
]


def git_accepts_branch(name: str) -> bool:
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
    )
    return done.returncode == 0


def git_accepts_component(name: str) -> bool:
    """One level of a ref name (``HEAD`` is fine there, though not as a whole branch name)."""
    args = ["git", "check-ref-format", "--allow-onelevel", f"refs/heads/x/{name}"]
    return subprocess.run(args, capture_output=True, check=False).returncode == 0


def assert_safe(name: str, max_len: int = 100) -> None:
    assert name
    assert len(name) <= max_len
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert ".." not in name
    assert not name.startswith((".", "-"))
    assert not name.endswith((".", ".lock"))
    assert git_accepts_component(name), name
    assert git_accepts_branch(f"mapwise/job-1/item/{name}"), name


@pytest.mark.parametrize("item_id", HOSTILE)
def test_hostile_ids_become_safe_names(item_id: str) -> None:
    assert_safe(ref_safe(item_id))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(), max_size=300), st.integers(min_value=1, max_value=120))
def test_any_text_becomes_a_safe_name(item_id: str, max_len: int) -> None:
    name = ref_safe(item_id, max_len)
    assert_safe(name, max_len)
    assert ref_safe(item_id, max_len) == name  # deterministic


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,50}", fullmatch=True))
def test_a_plain_id_is_kept_as_it_is(item_id: str) -> None:
    assert ref_safe(item_id) == item_id


def test_readable_where_the_id_was() -> None:
    assert ref_safe("fix bug #12 in parser.py") == "fix-bug-12-in-parser.py"
    assert ref_safe("../x") == "x"
    assert ref_safe("a..b") == "a.b"
    assert ref_safe("trailing.lock") == "trailing-lock"
    assert ref_safe("日本語") == "item"
    assert ref_safe("x" * 300) == "x" * 100


def test_job_branch() -> None:
    assert job_branch("20240101-abc") == "mapwise/20240101-abc/result"


def test_item_branches_resolve_collisions_with_the_index() -> None:
    items = [(0, "a b"), (1, "a-b"), (2, "c"), (3, "日本"), (4, "中文"), (5, "Case"), (6, "case")]
    branches = item_branches("j", items)
    assert branches == {
        0: "mapwise/j/item/a-b-0",
        1: "mapwise/j/item/a-b-1",
        2: "mapwise/j/item/c",
        3: "mapwise/j/item/item-3",
        4: "mapwise/j/item/item-4",
        5: "mapwise/j/item/Case-5",
        6: "mapwise/j/item/case-6",
    }


def test_item_branches_when_a_suffixed_name_meets_a_plain_one() -> None:
    # "a b" and "a-b" collide and become a-b-0 and a-b-1; the id "a-b-1" itself must move
    branches = item_branches("j", [(0, "a b"), (1, "a-b"), (2, "a-b-1"), (3, "a-b-1-2")])
    assert len({b.lower() for b in branches.values()}) == 4
    assert branches[2] == "mapwise/j/item/a-b-1-2"
    assert branches[3] == "mapwise/j/item/a-b-1-2-3"


ids = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.text(max_size=20), st.from_regex(r"[ab-]{1,4}")),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(ids)
def test_item_branches_are_unique_valid_and_stable(item_ids: list[str]) -> None:
    items = list(enumerate(item_ids))
    branches = item_branches("job", items)
    assert set(branches) == set(range(len(items)))
    assert len({b.lower() for b in branches.values()}) == len(items)
    assert all(b.startswith("mapwise/job/item/") for b in branches.values())
    assert item_branches("job", items) == branches
    assert item_branches("job", list(reversed(items))) == branches  # order does not matter


def test_item_branches_are_accepted_by_git(tmp_path: Path) -> None:
    items = list(enumerate(HOSTILE + HOSTILE))
    for branch in item_branches("job", items).values():
        assert git_accepts_branch(branch), branch
