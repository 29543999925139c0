"""Logging for the command line: configured here, once, for the whole process.

The library only logs to named loggers and never changes anyone's levels. The command
line owns its process and its terminal, so its one handler leaves out what would garble
the output: a Dask client logs a lost scheduler with tracebacks (mapwise reports the loss
itself, in one line), and asyncio and tornado log what the lost connection left behind.
A filter on the handler, not logger levels, because distributed sets its own loggers'
levels when it is imported, after this runs.
"""

from __future__ import annotations

import logging

QUIET = ("distributed", "tornado", "asyncio")


def _not_dask_noise(record: logging.LogRecord) -> bool:
    """Keep a record unless a Dask client library logged it below CRITICAL."""
    return record.name.split(".", 1)[0] not in QUIET or record.levelno >= logging.CRITICAL


def configure_logging() -> None:
    """Warnings and errors as ``mapwise: LEVEL: message``; the Dask client quiet."""
    logging.basicConfig(level=logging.WARNING, format="mapwise: %(levelname)s: %(message)s")
    for handler in logging.root.handlers:
        handler.addFilter(_not_dask_noise)
