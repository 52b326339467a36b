"""Shared fixtures. Every test process runs with one OpenMP thread and flushed denormals (rlpost.common.runtime)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rlpost.common.runtime import configure_cpu_runtime, pin_loopback

configure_cpu_runtime(threads=1)
pin_loopback()  # the tests' own Rays are local ones (the multi-node test gives its `ray start` nodes a clean env)

# Ray workers unpickle test fixtures by module name (the synthetic scenarios of tests/synthetic_policy.py, the
# plugin rewards of tests/unit/reward_plugins.py), so the processes a local Ray starts must find these folders too.
_HERE = Path(__file__).resolve().parent
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(_HERE), str(_HERE / "unit"), *filter(None, [os.environ.get("PYTHONPATH")])])
if str(_HERE / "unit") not in sys.path:  # the driver resolves plugin rewards by the same module names
    sys.path.insert(0, str(_HERE / "unit"))


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
