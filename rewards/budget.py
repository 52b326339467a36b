"""The error budget of the reward components: a run stops rather than train on a broken component's fallbacks.

A sample with status ``error`` from one component (the function raised, its worker died, its critic backend failed)
gets that component's fallback value. A few such samples are the price of plugins; a step where a component fails
for (nearly) all samples means the component is broken, and every advantage of the step would come from the
fallback. ``check_error_budget`` raises ``RewardBudgetError`` when the share of a step's samples with status error
reaches the component's ``max_error_share`` (default 1.0: the run stops when a component errs on every sample).

Only ``error`` counts. ``unparseable`` is the policy's fault and a real reward; ``timeout`` is bounded by
``deadline_s`` / ``max_timeouts_per_batch`` and comes and goes with load (a busy judge), so stopping on it would
end runs on a slow machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlpost.rewards.spec import RewardSpec


class RewardBudgetError(RuntimeError):
    """A reward component's share of samples with status error reached its ``max_error_share``."""


def check_error_budget(samples: Sequence[Any], specs: Sequence[RewardSpec], where: str) -> None:
    """Raise ``RewardBudgetError`` for the first component (in config order) over its error budget.

    samples: one step's scored samples: ``SampleRewards`` (``.components``), or per sample the mapping component ->
    ``ComponentRecord`` that rollout records carry in ``rewards``;
    specs: the run's ``rewards.components``; where: what was scored, for the message (e.g. ``"step 3"``).
    The message names the component, the share, the spec field and the first error message verbatim.
    """
    per_sample = [getattr(s, "components", s) for s in samples]
    if not per_sample:
        return
    for i, spec in enumerate(specs):
        name = spec.component
        errors = [rec for rec in (sample[name] for sample in per_sample) if rec.status == "error"]
        share = len(errors) / len(per_sample)
        if errors and share >= spec.max_error_share:
            first = errors[0].info.get("error", "(the reward recorded no message)")
            raise RewardBudgetError(
                f"reward component {name!r}: {len(errors)} of {len(per_sample)} samples of {where} have status "
                f"error ({share:.0%}), reaching rewards.components[{i}].max_error_share={spec.max_error_share}; the "
                f"run stops rather than train on its fallback value. Fix the reward (or its params); raise "
                f"max_error_share (at most 1.0) only to tolerate a larger share of failing samples. "
                f"First error: {first}"
            )
