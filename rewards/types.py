"""The data a reward function sees and returns, and the exact signature every reward implements.

A reward function is any callable

    fn(completions: Sequence[Completion], scenarios: Sequence[Scenario], /, **params)
        -> Sequence[RewardResult | float]            (sync)
        -> Awaitable[Sequence[RewardResult | float]] (async: ``async def``)

- ``completions[i]`` was generated for ``scenarios[i]`` (the two sequences are aligned and of equal length n;
  the same scenario object appears G times for a group of G rollouts).
- ``params`` are the ``params`` mapping of the reward's config entry (``RewardSpec.params``), passed as keyword
  arguments on every call.
- It returns exactly n items, one per completion, in order. A plain float means ``RewardResult(value, "ok")``.
  Values must be finite. A reward must not raise on bad *samples* (garbage text, a missing trajectory): it
  returns status ``unparseable`` for them. Whatever it does, the framework checks the result
  (``normalise_results``) and never lets a plugin's exception, hang, NaN or wrong length break the run.
- It must be importable by reference (a module-level function or callable instance) to run in a worker process
  with a deadline; closures and lambdas only run in-process (``RewardSpec.in_process``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import numpy as np

from rlpost.domain.decode import DecodeStatus

Status = Literal["ok", "timeout", "error", "unparseable"]
STATUSES: tuple[str, ...] = get_args(Status)
# Statuses whose value is replaced by the component's configured fallback: the function produced no score.
# "unparseable" keeps the function's own value: it is a legitimate (usually minimal) score of a garbage sample.
FALLBACK_STATUSES = ("timeout", "error")


@dataclass(frozen=True, slots=True)
class Completion:
    """One rollout as the reward functions see it.

    scenario_id: id of the scenario it was generated for (equals ``scenario.scenario_id`` of the aligned scenario).
    group_index: index of this rollout within its GRPO group, ``0 <= group_index < G``.
    trace: the chain-of-causation text between ``<|cot_start|>`` and ``<|cot_end|>``; may be empty or garbage.
    controls: ``(64, 2)`` float array of (acceleration [m/s²], curvature [1/m]) per 0.1 s step, or None when the
        trajectory tokens could not be decoded. Rewards must still check it: it may hold NaN or a wrong shape.
    decode_status: how the trajectory decoded (``rlpost.domain.decode.DecodeStatus``: ok, no_trajectory,
        malformed_trajectory), None when the caller did not say.
    token_ids: the completion's token ids, when the caller has them (used by no built-in).
    """

    scenario_id: str
    group_index: int
    trace: str
    controls: np.ndarray | None
    decode_status: DecodeStatus | None = None
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class RewardResult:
    """The score of one completion by one reward.

    value: the reward (finite float). For status timeout/error the pipeline substitutes the configured fallback.
    status: ``ok`` | ``timeout`` (deadline hit) | ``error`` (the function failed; reason in ``info["error"]``) |
        ``unparseable`` (the sample could not be interpreted, e.g. garbage trace or no trajectory).
    info: small JSON-serialisable diagnostics (logged per sample; cached with the value).
    """

    value: float
    status: Status = "ok"
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unparseable(cls, value: float, reason: str, **info: Any) -> RewardResult:
        """A garbage sample scored ``value`` (usually the reward's minimum), with the reason in ``info``."""
        return cls(float(value), "unparseable", {"reason": reason, **info})

    @classmethod
    def failed(cls, status: Status, fallback: float, message: str) -> RewardResult:
        """A sample the function did not score (timeout/error): ``fallback`` value, the message in ``info``."""
        return cls(float(fallback), status, {"error": message})


@runtime_checkable
class RewardFunction(Protocol):
    """The reward signature (see the module docstring). ``async def`` implementations are awaited."""

    def __call__(self, completions: Sequence[Completion], scenarios: Sequence[Any], /, **params: Any) -> Any: ...


class ScenarioLike(Protocol):
    """The fields of ``rlpost.scenarios.schema.Scenario`` that the built-in rewards read (any object with them will do).

    history ``(20, 4)`` (x, y, yaw, v) in the ego frame with t0 last; future ``(64, 4)`` expert states;
    expert_controls ``(64, 2)``; agent_states ``(N, 84, 4)`` over history + future steps; agent_size ``(N, 2)``
    (length, width) [m]; agent_valid ``(N, 84)`` bool; coc_trace: the ground-truth trace text.
    """

    scenario_id: str
    history: np.ndarray
    future: np.ndarray
    expert_controls: np.ndarray
    agent_states: np.ndarray
    agent_size: np.ndarray
    agent_valid: np.ndarray
    coc_trace: str


def _as_value(x: Any) -> float | None:
    """A finite float from a real number, else None (bools are refused: a reward is not a truth value)."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def normalise_results(name: str, out: Any, n: int, fallback: float) -> list[RewardResult]:
    """Check what reward ``name`` returned for a batch of ``n`` samples; return exactly n ``RewardResult``.

    Plain real numbers become status ``ok``. A wrong container or length makes every sample status ``error``;
    a bad item (NaN/inf, wrong type, unknown status, info not a dict) makes that sample ``error``. Every message
    names the reward and the sample index. timeout/error results carry ``fallback`` as their value.
    """
    if isinstance(out, (str, bytes, dict)) or not isinstance(out, (Sequence, np.ndarray)):
        msg = f"reward {name!r} returned {type(out).__name__}; expected a list of {n} RewardResult or float"
        return [RewardResult.failed("error", fallback, msg) for _ in range(n)]
    if len(out) != n:
        msg = f"reward {name!r} returned {len(out)} results for {n} samples; expected exactly one per sample"
        return [RewardResult.failed("error", fallback, msg) for _ in range(n)]
    results = []
    for i, item in enumerate(out):
        if isinstance(item, RewardResult):
            value = _as_value(item.value)
            if item.status not in STATUSES:
                msg = f"reward {name!r}: sample {i} has status {item.status!r}; expected one of {STATUSES}"
                results.append(RewardResult.failed("error", fallback, msg))
            elif not isinstance(item.info, dict):
                msg = f"reward {name!r}: sample {i} info is {type(item.info).__name__}; expected dict"
                results.append(RewardResult.failed("error", fallback, msg))
            elif item.status in FALLBACK_STATUSES:
                results.append(RewardResult(float(fallback), item.status, item.info))
            elif value is None:
                msg = f"reward {name!r}: sample {i} value {item.value!r} is not a finite real number"
                results.append(RewardResult.failed("error", fallback, msg))
            else:
                results.append(item if type(item.value) is float else RewardResult(value, item.status, item.info))
        else:
            value = _as_value(item)
            if value is None:
                msg = (
                    f"reward {name!r}: sample {i} is {type(item).__name__} {item!r:.60}; "
                    "expected a finite float or a RewardResult"
                )
                results.append(RewardResult.failed("error", fallback, msg))
            else:
                results.append(RewardResult(value))
    return results


def usable_controls(completion: Any, steps: int) -> tuple[np.ndarray | None, str]:
    """A completion's controls as a finite float64 ``(steps, 2)`` array, or (None, the reason it is unusable)."""
    raw = getattr(completion, "controls", None)
    if raw is None:
        return None, f"no trajectory (decode_status={getattr(completion, 'decode_status', None)!r})"
    try:
        u = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return None, f"controls are not numeric: {exc}"
    if u.shape != (steps, 2):
        return None, f"controls have shape {u.shape}, expected ({steps}, 2)"
    if not np.isfinite(u).all():
        return None, "controls contain NaN or inf"
    return u, ""
