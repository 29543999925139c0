"""Logging for the command line: configured here, once, for the whole process.

The library only logs to named loggers and never changes anyone's levels. The command
line owns its process, so it quiets what would garble its output: a Dask client logs a
lost scheduler with tracebacks (mapwise reports the loss itself, in one line), and asyncio
logs the tasks that the lost connection left behind.
"""

from __future__ import annotations

import logging
import os

# dask reads its configuration from DASK_* variables when it is first imported; setting
# it there, before any import, outlasts distributed's own logging set-up
_DASK_QUIET = {"DASK_LOGGING__DISTRIBUTED": "critical", "DASK_LOGGING__TORNADO": "critical"}


def configure_logging() -> None:
    """Warnings and errors as ``mapwise: LEVEL: message``; the Dask client quiet."""
    logging.basicConfig(level=logging.WARNING, format="mapwise: %(levelname)s: %(message)s")
    for name, value in _DASK_QUIET.items():
        os.environ.setdefault(name, value)
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
