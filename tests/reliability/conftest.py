"""The reliability suites' option: ``--long`` runs the long versions.

``pytest -q`` (CI) runs the short versions; ``pytest tests/reliability --long`` (or
``MAPWISE_RELIABILITY_LONG=1`` anywhere, since pytest only parses options of the
conftest files it loads at startup) runs the long ones. See docs/reliability.md.
"""

from __future__ import annotations

import os

import pytest

from helpers.damage import BOUNDARIES_ONLY, EVERY_5_ITEMS, Template, build_template
from helpers.reliability import LONG_ENV


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
    """A job killed halfway with a checkpoint every 5 items (see ``helpers.damage``)."""
    return build_template(
        tmp_path_factory.mktemp("damage") / "template", EVERY_5_ITEMS, checkpoints=3
    )


@pytest.fixture(scope="session")
def wal_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A job killed halfway whose only checkpoint is the one taken when its items were
    frozen: every success it recorded is in the WAL's live frames."""
    return build_template(tmp_path_factory.mktemp("damage") / "wal-template", BOUNDARIES_ONLY)
