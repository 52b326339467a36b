import os
import subprocess
import sys

import pytest
import redis

from rlpost.storage.local_redis import URL_ENV, LocalRedisServer, is_reachable, server_binary

pytestmark = pytest.mark.integration


def test_session_server_is_real_and_answers(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.set("rlpost:test:key", "value")
    assert client.get("rlpost:test:key") == b"value"
    client.delete("rlpost:test:key")
    assert redis_url.startswith("redis://127.0.0.1:")


def test_local_server_starts_on_loopback_and_stops():
    with LocalRedisServer() as server:
        assert is_reachable(server.url)
        assert redis.Redis.from_url(server.url).zadd("sel", {"a": 1.0, "b": 2.0}) == 2
        url = server.url
    assert not is_reachable(url)


def test_run_wrapper_starts_a_server_when_none_is_reachable():
    env = {k: v for k, v in os.environ.items() if k != URL_ENV}
    env[URL_ENV] = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    code = (
        "import os, redis; r = redis.Redis.from_url(os.environ['RLPOST_REDIS_URL']); "
        "assert r.ping(); raise SystemExit(7)"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "rlpost.storage.local_redis", "--", sys.executable, "-c", code],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 7, proc.stderr  # the command's exit code is propagated
    assert "started" in proc.stdout and "stopped" in proc.stdout


def test_server_binary_exists():
    assert os.access(server_binary(), os.X_OK)
