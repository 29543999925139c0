"""The command line's logging: Dask's client noise is left out, mapwise's own kept."""

from __future__ import annotations

import logging

import pytest

from mapwise.cli.logs import _not_dask_noise


def record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "message", None, None)


@pytest.mark.parametrize(
    "name", ["distributed", "distributed.client", "tornado.general", "asyncio"]
)
def test_a_dask_client_error_is_left_out(name: str) -> None:
    assert not _not_dask_noise(record(name, logging.ERROR))


def test_a_critical_dask_record_and_mapwise_warnings_are_kept() -> None:
    assert _not_dask_noise(record("distributed.client", logging.CRITICAL))
    assert _not_dask_noise(record("mapwise.engine.checkpointer", logging.WARNING))
    assert _not_dask_noise(record("distributedthing", logging.ERROR))
