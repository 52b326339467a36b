"""Shared fixtures. Every test process runs with one OpenMP thread and flushed denormals (rlpost.common.runtime)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlpost.common.runtime import configure_cpu_runtime

configure_cpu_runtime(threads=1)

# Ray workers unpickle test fixtures (the synthetic scenarios of tests/synthetic_policy.py) by module name, so the
# processes a local Ray starts must find this folder too.
_HERE = str(Path(__file__).resolve().parent)
os.environ["PYTHONPATH"] = os.pathsep.join([_HERE, *filter(None, [os.environ.get("PYTHONPATH")])])


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
