"""What every rlpost Ray actor shares: its process environment and how the driver waits on it."""

from __future__ import annotations

import ray

from rlpost.common.runtime import deployment_env

# The environment of this driver's deployment; ``connect_ray`` sets it for a cluster run. The default is a local
# Ray's (loopback), which is also what a test or notebook that calls ``ray.init`` itself gets.
_DEPLOYMENT_ENV: dict[str, str] = deployment_env(local=True)


def set_deployment_env(env: dict[str, str]) -> None:
    """Make ``env`` (``rlpost.common.runtime.deployment_env``) the base of every later ``actor_env``."""
    global _DEPLOYMENT_ENV
    _DEPLOYMENT_ENV = dict(env)


def deployment_env_vars() -> dict[str, str]:
    return dict(_DEPLOYMENT_ENV)


def actor_env(threads: int = 1, **extra: str) -> dict:
    """``runtime_env`` for an actor: the deployment's environment (loopback only for a local Ray), one OpenMP
    thread (several busy processes share 2 cores)."""
    return {"env_vars": {**_DEPLOYMENT_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                         **extra}}


class ActorCallError(RuntimeError):
    """A call on an actor failed or ran past its deadline; the message names the actor and what it was doing."""


class ActorDiedError(ActorCallError):
    """The actor died during the call (restartable roles are restarted by Ray and the call is reissued)."""


def wait(refs, what: str, timeout_s: float):
    """``ray.get`` with a deadline; on timeout or actor death raise ``ActorCallError`` naming ``what``."""
    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise ActorCallError(f"{what}: no answer within {timeout_s:.0f} s (deadline); the run stops here") from None
    except ray.exceptions.RayActorError as exc:
        raise ActorDiedError(f"{what}: the actor died ({exc.__class__.__name__}: {str(exc)[:300]})") from None


def revive(actor, what: str, timeout_s: float) -> None:
    """Block until Ray has restarted ``actor`` (its constructor ran again) or raise ``ActorCallError``."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=max(deadline - time.monotonic(), 1.0))
            return
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
            raise ActorCallError(
                f"{what}: the actor did not come back after a restart ({exc.__class__.__name__})"
            ) from None
    raise ActorCallError(f"{what}: the actor did not come back within {timeout_s:.0f} s")
