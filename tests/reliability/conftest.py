"""The reliability suites' option: ``--long`` runs the long versions.

``pytest -q`` (CI) runs the short versions; ``pytest tests/reliability --long`` (or
``MAPWISE_RELIABILITY_LONG=1`` anywhere, since pytest only parses options of the
conftest files it loads at startup) runs the long ones. See docs/reliability.md.

pytest imports every folder's ``conftest.py`` under the name ``conftest``, so once this one
is loaded, ``from conftest import X`` in another folder's module would find it; names this
module lacks are looked up in ``tests/conftest.py`` so that such imports keep working.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from _damage import BOUNDARIES_ONLY, EVERY_5_ITEMS, Template, build_template
from _reliability import LONG_ENV, root_conftest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the long versions of the reliability suites (tests/reliability)",
    )


@pytest.fixture(scope="session")
def long_run(pytestconfig: pytest.Config) -> bool:
    """Whether the long versions run (``--long`` or ``MAPWISE_RELIABILITY_LONG=1``)."""
    given = bool(pytestconfig.getoption("--long", default=False))
    return given or os.environ.get(LONG_ENV, "") not in ("", "0")


@pytest.fixture(scope="session")
def damage_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A job killed halfway with a checkpoint every 5 items (see ``_damage``)."""
    return build_template(
        tmp_path_factory.mktemp("damage") / "template", EVERY_5_ITEMS, checkpoints=3
    )


@pytest.fixture(scope="session")
def wal_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A job killed halfway whose only checkpoint is the one taken when its items were
    frozen: every success it recorded is in the WAL's live frames."""
    return build_template(tmp_path_factory.mktemp("damage") / "wal-template", BOUNDARIES_ONLY)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(root_conftest, name)
