"""JudgeServer: the reasoning judge's vLLM engine in its own named Ray actor, shared by every reward process.

    from rlpost.actors.judge_server import start_judge_server
    server = start_judge_server("runs/judge/final")           # name "rlpost-judge", namespace "rlpost"
    ... rewards: {name: reasoning_critic, cache: true, params: {backend: judge, model: runs/judge/final}}
    stop_judge_server(server)

The ``judge`` critic backend (``rlpost.judge.critic``) looks the actor up by name in its namespace (named actors
in Ray's default anonymous namespace are invisible to other jobs, and a guarded reward worker that connects to
the cluster is another job). The actor is *owned* by the process that starts it (it dies with that driver) unless
``detached=True``; whoever builds the run starts it before the reward workers and stops it at shutdown.
"""

from __future__ import annotations

import os

import ray

from rlpost.actors.common import actor_env
from rlpost.judge.critic import ADDRESS_ENV, DEFAULT_NAMESPACE, DEFAULT_SERVER


@ray.remote
class JudgeServer:
    """A :class:`rlpost.judge.critic.JudgeEngine` (vLLM) answering batched ``complete(pairs)`` calls."""

    def __init__(self, model: str, threads: int = 1, **engine_options):
        from rlpost.common.runtime import configure_cpu_runtime
        from rlpost.judge.critic import JudgeEngine

        configure_cpu_runtime(threads)
        self.engine = JudgeEngine(model, **engine_options)
        self.calls = 0
        self.pairs = 0

    def complete(self, pairs: list[tuple[str, str]]) -> list[str]:
        """Raw judge outputs for (reference, candidate) pairs, in order (parsed by the backend)."""
        self.calls += 1
        self.pairs += len(pairs)
        return self.engine.complete(pairs)

    def info(self) -> dict:
        return {"model": self.engine.model, "own_format": self.engine.own_format, "calls": self.calls,
                "pairs": self.pairs}


def start_judge_server(model: str, *, name: str = DEFAULT_SERVER, namespace: str = DEFAULT_NAMESPACE,
                       num_cpus: float = 0.5, num_gpus: float = 0, detached: bool = False, threads: int = 1,
                       timeout_s: float = 300.0, **engine_options):
    """Start (or reuse, if one of that name runs) the named JudgeServer on ``model`` and wait until it is ready.

    Needs ``ray.init`` first. engine_options: ``JudgeEngine`` keywords (``kv_cache_gib``, ``seed``, ``max_tokens``,
    ``temperature``, ``batch_size``, ``max_model_len``).
    """
    from rlpost.actors.common import wait

    opts = dict(name=name, namespace=namespace, get_if_exists=True, num_cpus=num_cpus,
                runtime_env=actor_env(threads, VLLM_ENABLE_V1_MULTIPROCESSING="0"))
    if num_gpus:
        opts["num_gpus"] = num_gpus
    if detached:
        opts["lifetime"] = "detached"
    handle = JudgeServer.options(**opts).remote(str(model), threads, **engine_options)
    wait(handle.info.remote(), f"judge server {name!r} start (vLLM on {model})", timeout_s)
    # Reward workers this process starts later (forkserver children: not Ray workers) find the cluster by this.
    os.environ[ADDRESS_ENV] = ray.get_runtime_context().gcs_address
    return handle


def stop_judge_server(handle_or_name, namespace: str = DEFAULT_NAMESPACE) -> None:
    """Kill the JudgeServer (a handle, or its name in ``namespace``); no-op when it is not running."""
    handle = handle_or_name
    if isinstance(handle_or_name, str):
        try:
            handle = ray.get_actor(handle_or_name, namespace=namespace)
        except ValueError:
            return
    ray.kill(handle)
