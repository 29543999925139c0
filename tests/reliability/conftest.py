"""The reliability suites' damaged-job templates.

``pytest -q`` (CI) runs the short versions; ``pytest tests/reliability --long`` (or
``MAPWISE_RELIABILITY_LONG=1``) runs the long ones: the option and the ``long_run``
fixture are defined in ``tests/conftest.py``. See docs/reliability.md.
"""

from __future__ import annotations

import pytest

from helpers.damage import BOUNDARIES_ONLY, EVERY_5_ITEMS, Template, build_template


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
