"""A fake OpenAI-compatible HTTP server on loopback for transport tests of endpoint clients: the test supplies
``respond(path, body) -> response JSON``; every request is recorded as (path, body) in ``server.seen``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self, url: str):
        self.url = url  # base URL, ending in /v1
        self.seen: list[tuple[str, dict]] = []


@contextmanager
def fake_openai(respond: Callable[[str, dict], dict]) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.seen.append((self.path, body))
            raw = json.dumps(respond(self.path, body)).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except BrokenPipeError:  # the client gave up at its timeout
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
