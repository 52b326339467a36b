"""Process-level CPU settings that every rlpost process (driver, Ray actor, test) applies before running models."""

from __future__ import annotations

import os

# Every rlpost process, whatever the deployment: models come from paths (no hub), no tokenizer fork warnings.
PROCESS_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

# Only a local Ray that rlpost starts itself (docs/machine-notes.md#loopback-only-local-run): bind and advertise
# 127.0.0.1, no Ray auth token, DeepSpeed's CPU accelerator. On a cluster these would be wrong: learner ranks on
# two hosts would rendezvous at 127.0.0.1, GPU learners would get the CPU accelerator, and
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 forbids a node from joining.
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "VLLM_HOST_IP": "127.0.0.1",
    "MASTER_ADDR": "127.0.0.1",
    "DS_ACCELERATOR": "cpu",
}


def deployment_env(local: bool, env: dict[str, str] | None = None, network_interface: str | None = None) -> dict:
    """The environment every actor of a run gets: ``PROCESS_ENV``, the loopback pinning when ``local`` (a Ray
    rlpost starts), the socket interface of gloo / NCCL when given, then the site's ``env`` over all of it.

    On a cluster nothing pins an address or an accelerator: Ray gives each actor its node's address, DeepSpeed
    detects CUDA (NCCL) or falls back to the CPU (gloo), and the learner ranks meet at rank 0's node address.
    """
    out = {**PROCESS_ENV, **(LOOPBACK_ENV if local else {})}
    if network_interface:
        out.update({"GLOO_SOCKET_IFNAME": network_interface, "NCCL_SOCKET_IFNAME": network_interface})
    return {**out, **(env or {})}


def pin_loopback() -> None:
    """Set ``LOOPBACK_ENV`` in this process (values already set win) before it starts a local Ray, vLLM or
    torch.distributed: the processes Ray starts read them when they import it."""
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)


def configure_cpu_runtime(threads: int = 1) -> None:
    """Apply the CPU settings: ``threads`` OpenMP/torch threads, flush denormals, ``PROCESS_ENV``.

    One thread per process is the default because several busy processes sharing 2 cores with two OpenMP
    threads each made small torch ops randomly 30-100x slower; flushing denormals gave small models 7-13x.
    Environment variables already set by the user win (``setdefault``), except the thread count passed here.
    Addresses and the accelerator are the deployment's business (``deployment_env``), not set here: this runs in
    every actor, on a laptop and on a cluster alike.
    """
    if threads < 1:
        raise ValueError(f"threads: must be >= 1, got {threads}")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    for key, value in PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    import torch

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def skip_deepspeed_shm_op() -> None:
    """Keep DeepSpeed from JIT-compiling its shared-memory all-reduce op at ``init_distributed``.

    On the CPU accelerator DeepSpeed builds ``deepspeed_shm_comm`` at every backend start when its build hash
    differs (30-60 s, minutes under load) behind a file lock; a build killed midway leaves the lock and every later
    start then waits on it forever (seen here: a learner setup hung 600 s). The op only serves
    ``inference_all_reduce``; training all-reduces go through torch.distributed (gloo / NCCL), so it is marked
    incompatible, which DeepSpeed's own op table supports.
    """
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is not None:
        deepspeed.ops.__compatible_ops__[builder.NAME] = False


def forget_stale_deepspeed_groups() -> None:
    """Drop DeepSpeed's cached clone of the world group when that group no longer exists.

    DeepSpeed keeps the clone in a module global; when torch.distributed is torn down and re-initialised in the
    same process (an in-process vLLM engine does both), the next engine fails with "Group ... is not registered".
    Learner ranks own their process in a run, so this only matters where engines share one (tests, notebooks).
    """
    import torch.distributed as dist
    from deepspeed.utils import groups

    cached = getattr(groups, "_WORLD_GROUP", None)
    if cached is not None and (not dist.is_initialized() or cached not in dist.distributed_c10d._world.pg_map):
        groups._WORLD_GROUP = None


def init_deepspeed_distributed(backend: str = "gloo") -> None:
    """``deepspeed.init_distributed`` the way every rlpost process needs it: without the unused shm op's JIT
    build, and without a stale cached world group afterwards (see the two functions above)."""
    import deepspeed

    skip_deepspeed_shm_op()
    deepspeed.init_distributed(dist_backend=backend)
    forget_stale_deepspeed_groups()
