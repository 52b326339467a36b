"""What every rlpost Ray actor shares: its process environment and how the driver waits on it."""

from __future__ import annotations

import ray

from rlpost.runtime import LOOPBACK_ENV


def actor_env(threads: int = 1, **extra: str) -> dict:
    """``runtime_env`` for an actor: one OpenMP thread (several busy processes share 2 cores), loopback only."""
    return {"env_vars": {**LOOPBACK_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **extra}}


class ActorCallError(RuntimeError):
    """A call on an actor failed or ran past its deadline; the message names the actor and what it was doing."""


def wait(refs, what: str, timeout_s: float):
    """``ray.get`` with a deadline; on timeout or actor death raise ``ActorCallError`` naming ``what``."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise ActorCallError(f"{what}: no answer within {timeout_s:.0f} s (deadline); the run stops here") from None
    except ray.exceptions.RayActorError as exc:
        raise ActorCallError(f"{what}: the actor died ({exc.__class__.__name__}: {str(exc)[:300]})") from None
