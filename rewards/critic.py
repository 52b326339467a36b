"""Built-in reward ``reasoning_critic`` (docs/design.md §5.1): a 0–5 grade of the generated trace against the ground
truth.

One reward, several interchangeable graders ("backends") behind one interface:

- ``rubric`` (``rlpost.rewards.rubric``): deterministic rules over the parsed decisions and causal factors; cheap,
  reproducible, and the teacher of the judge (its rationales are training targets).
- ``judge`` (``rlpost.judge.critic``): a judge model served by vLLM (in the JudgeServer Ray actor, or in the reward
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
from collections.abc import Sequence
from typing import Any

from rlpost.rewards import rubric as _rubric  # noqa: F401  (registers the rubric backend)
from rlpost.rewards.critic_backends import (
    MAX_GRADE,
    CriticBackend,
    CritiqueRequest,
    critic_backend_factory,
    get_critic_backend,
)
from rlpost.rewards.registry import ParamProblem, bind_keywords, register_reward
from rlpost.rewards.types import Completion, RewardResult


def _to_results(grades: Any, n: int, backend: CriticBackend, normalise: bool) -> list[RewardResult]:
    if not isinstance(grades, (list, tuple)) or len(grades) != n:
        got = len(grades) if isinstance(grades, (list, tuple)) else type(grades).__name__
        msg = f"reward 'reasoning_critic': backend {backend.name!r} returned {got} grades for {n} requests"
        return [RewardResult.failed("error", 0.0, msg) for _ in range(n)]
    out = []
    for g in grades:
        info = {"backend": backend.name, "backend_version": backend.version, "grade": g.grade,
                "rationale": g.rationale, **g.details}
        if g.status == "timeout":  # the pipeline substitutes the fallback and counts it as a timeout
            out.append(RewardResult(0.0, "timeout",
                                    info | {"error": f"reasoning_critic[{backend.name}]: {g.rationale}"}))
            continue
        valid = isinstance(g.grade, int) and 0 <= g.grade <= MAX_GRADE
        if g.status == "error" or not valid:
            reason = g.rationale if g.status == "error" else f"grade {g.grade!r} outside 0..{MAX_GRADE}"
            out.append(RewardResult(0.0, "error", info | {"error": f"reasoning_critic[{backend.name}]: {reason}"}))
            continue
        value = g.grade / MAX_GRADE if normalise else float(g.grade)
        out.append(RewardResult(value, "unparseable" if g.status == "unparseable" else "ok", info))
    return out


def check_backend_options(options: dict[str, Any], bound: dict[str, Any]) -> list[ParamProblem]:
    """Before a run: ``backend`` names a known backend and the remaining params bind to its factory's options
    (a typo in a backend option would otherwise fail every sample with status error)."""
    backend = bound["backend"]
    if not isinstance(backend, str):  # already reported against the ``backend: str`` annotation
        return []
    try:
        factory, _ = critic_backend_factory(backend)
    except KeyError as exc:
        return [ParamProblem("backend", str(exc.args[0]))]
    # ImportError of a backend's entry point propagates: the caller reports it as the component's problem.
    problems, _, _ = bind_keywords(factory, options, owner=f"critic backend {backend!r} of reasoning_critic")
    return problems


@register_reward("reasoning_critic", version="1", check_options=check_backend_options)
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

