"""What the reliability suites share: seeds that reproduce, the no-traceback check."""

from __future__ import annotations

import os
import random

LONG_ENV = "MAPWISE_RELIABILITY_LONG"


def seed_from(variable: str) -> int:
    """A random seed, or the one given in ``variable``; printed so a failure reproduces."""
    given = os.environ.get(variable)
    seed = int(given) if given else random.randrange(2**32)
    print(f"seed: {variable}={seed}")
    return seed


def no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text
