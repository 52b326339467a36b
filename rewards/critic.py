"""Built-in reward ``reasoning_critic`` (SPEC §5.1): a 0–5 grade of the generated trace against the ground truth.

One reward, several interchangeable graders ("backends") behind one interface:

- ``rubric`` (``rlpost.rewards.rubric``): deterministic rules over the parsed decisions and causal factors; cheap,
  reproducible, and the teacher of the judge (its rationales are training targets).
- ``judge`` (``rlpost.rewards.judge``): a judge model served by vLLM (in the JudgeServer Ray actor, or in the reward
  worker) or any OpenAI-compatible endpoint, prompted with the same rubric; on CPU the project's own small judge
  distilled from the rubric (``rlpost sft --task judge``). Backends plug in by registering::

      @register_critic_backend("judge", version="1")
      class JudgeCritic:
          def __init__(self, *, endpoint: str, model: str, ...): ...
          async def grade(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueGrade]: ...

  ``grade`` may be sync or ``async``; an async grade makes the reward return an awaitable, which the guard awaits
  under the component's deadline. Give the judge's component ``cache: true``: its results are stored in Redis by
  (reward, params (incl. backend and model), version, scenario, completion).

The reward's value is ``grade / 5`` (in [0, 1], comparable with the other components' scales) unless
``normalise=False``; info carries the integer grade, the backend name and version, and the backend's rationale.
Bump the reward's version when a backend's grading changes (the version is part of the cache key).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from rlpost.rewards.registry import register_reward
from rlpost.rewards.types import Completion, RewardResult

MAX_GRADE = 5


@dataclass(frozen=True, slots=True)
class CritiqueRequest:
    """What a critic grades: the generated trace against the scenario's ground-truth trace (text only, SPEC §5.1)."""

    scenario_id: str
    trace: str
    reference: str


@dataclass(frozen=True, slots=True)
class CritiqueGrade:
    """A critic's verdict on one request.

    grade: integer 0–5 (None unless status is ok/unparseable); status: ok | unparseable (grade 0: the generated trace
    has no usable decision, or a judge's output is not a grade: ``details["unparseable"] == "judge_output"``) |
    error (the critic could not grade: e.g. the reference does not parse, the judge is unreachable); rationale: one
    or two sentences saying why (the judge's teacher signal); details: small JSON-serialisable diagnostics.
    """

    grade: int | None
    status: Literal["ok", "unparseable", "error"] = "ok"
    rationale: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class CriticBackend(Protocol):
    """A grader: ``grade(requests)`` returns one ``CritiqueGrade`` per request, in order (or an awaitable of it).

    Must not raise for a bad *sample* (return status unparseable/error for it); a raise fails the whole batch
    (status error for each sample, with the message). ``name``/``version`` are set by the registration.
    """

    name: str
    version: str

    def grade(self, requests: Sequence[CritiqueRequest]) -> Any: ...


_BACKENDS: dict[str, tuple[Callable[..., CriticBackend], str]] = {}
_INSTANCES: dict[tuple[str, str], CriticBackend] = {}  # (backend, options as JSON): built once per process


def register_critic_backend(name: str, *, version: str = "1"):
    """Decorator: register a backend factory (a class or function taking keyword options) under ``name``."""

    def decorate(factory: Callable[..., CriticBackend]) -> Callable[..., CriticBackend]:
        old = _BACKENDS.get(name)
        if old is not None and old[0].__qualname__ != factory.__qualname__:
            raise ValueError(f"critic backend {name!r} is already registered by {old[0].__qualname__}")
        _BACKENDS[name] = (factory, version)
        return factory

    return decorate


def critic_backends() -> dict[str, str]:
    """Registered backend names -> versions."""
    return {name: version for name, (_, version) in sorted(_BACKENDS.items())}


def get_critic_backend(name: str, **options: Any) -> CriticBackend:
    """The backend ``name`` built with ``options`` (cached per process: a judge client is built once).

    Raises ``KeyError`` naming the known backends for an unknown name.
    """
    if name not in _BACKENDS:
        raise KeyError(f"unknown critic backend {name!r}; known: {sorted(_BACKENDS)}")
    key = (name, json.dumps(options, sort_keys=True, default=repr))
    if key not in _INSTANCES:
        factory, version = _BACKENDS[name]
        backend = factory(**options)
        backend.name, backend.version = name, version
        _INSTANCES[key] = backend
    return _INSTANCES[key]


def _to_results(grades: Any, n: int, backend: CriticBackend, normalise: bool) -> list[RewardResult]:
    if not isinstance(grades, (list, tuple)) or len(grades) != n:
        got = len(grades) if isinstance(grades, (list, tuple)) else type(grades).__name__
        msg = f"reward 'reasoning_critic': backend {backend.name!r} returned {got} grades for {n} requests"
        return [RewardResult.failed("error", 0.0, msg) for _ in range(n)]
    out = []
    for g in grades:
        info = {"backend": backend.name, "backend_version": backend.version, "grade": g.grade,
                "rationale": g.rationale, **g.details}
        valid = isinstance(g.grade, int) and 0 <= g.grade <= MAX_GRADE
        if g.status == "error" or not valid:
            reason = g.rationale if g.status == "error" else f"grade {g.grade!r} outside 0..{MAX_GRADE}"
            out.append(RewardResult(0.0, "error", info | {"error": f"reasoning_critic[{backend.name}]: {reason}"}))
            continue
        value = g.grade / MAX_GRADE if normalise else float(g.grade)
        out.append(RewardResult(value, "unparseable" if g.status == "unparseable" else "ok", info))
    return out


@register_reward("reasoning_critic", version="1")
def reasoning_critic(
    completions: Sequence[Completion],
    scenarios: Sequence[Any],
    /,
    *,
    backend: str = "rubric",
    normalise: bool = True,
    **options: Any,
):
    """Grade each completion's trace against ``scenario.coc_trace`` with critic ``backend`` (0–5; /5 if normalise).

    options: the backend's keyword options (e.g. the rubric's thresholds, the judge's endpoint). A scenario
    without a ground-truth trace gets status error. Returns a list, or an awaitable of one for an async backend.
    """
    critic = get_critic_backend(backend, **options)
    requests = [
        CritiqueRequest(str(getattr(s, "scenario_id", "?")), c.trace if isinstance(c.trace, str) else "",
                        getattr(s, "coc_trace", None) or "")
        for c, s in zip(completions, scenarios)
    ]
    grades = critic.grade(requests)
    if inspect.isawaitable(grades):
        async def finish():
            return _to_results(await grades, len(requests), critic, normalise)

        return finish()
    return _to_results(grades, len(requests), critic, normalise)


# The rubric and judge backends register themselves on import; importing them here makes them available wherever
# the reward is.
from rlpost.rewards import rubric as _rubric  # noqa: E402,F401
from rlpost.rewards import judge as _judge  # noqa: E402,F401  (light: vLLM/Ray load on first use)
