"""Shared fixtures. Every test process runs with one OpenMP thread and flushed denormals (rlpost.common.runtime)."""

from __future__ import annotations

import os

import pytest

from rlpost.common.runtime import configure_cpu_runtime

configure_cpu_runtime(threads=1)


@pytest.fixture(scope="session")
def redis_url():
    """URL of a real Redis server: the one `make test` started (RLPOST_REDIS_URL), else one started here."""
    from rlpost.storage.local_redis import URL_ENV, LocalRedisServer, is_reachable

    url = os.environ.get(URL_ENV)
    if url and is_reachable(url):
        yield url
        return
    with LocalRedisServer() as server:
        yield server.url
