"""Typed config of the reward components (one YAML list entry per component).

    rewards:
      components:
        - {name: trajectory_quality, weight: 1.0, in_process: true, deadline_s: null}
        - {name: coc_consistency, weight: 1.0}
        - {name: reasoning_critic, weight: 0.2, params: {backend: rubric}, cache: true}
        - {fn: mypkg.rewards:lane_bonus, weight: 0.2, deadline_s: 5, fallback: 0.0}

``params`` are bound against the function's keyword parameters by ``problems()`` (run by ``RunConfig.preflight``):
a typo is refused before a run starts rather than failing every sample with status error.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from rlpost.common.config import StrictModel


class RewardSpec(StrictModel):
    """One reward component: what to call, how much it weighs and how it is guarded."""

    model_config = ConfigDict(frozen=True)

    name: str | None = Field(None, description="Built-in or entry-point reward name (exclusive with fn).")
    fn: str | None = Field(None, description="Dotted path 'package.module:function' of a plugin (exclusive with name).")
    label: str | None = Field(
        None, description="Component name in logs and metrics; default: name, or the function part of fn."
    )
    weight: float = Field(1.0, description="Weight of this component in the per-sample total (weighted sum).")
    deadline_s: float | None = Field(
        10.0,
        gt=0,
        description="Seconds one call (one chunk of samples) may take in its worker process before it is killed "
        "and the chunk's samples get status timeout. null: no deadline (required with in_process).",
    )
    fallback: float = Field(0.0, description="Value given to samples with status timeout or error.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed on every call (bound to the function at preflight)."
    )
    in_process: bool = Field(
        False,
        description="Call the function in the calling process: no process hop, but no deadline can be enforced "
        "(a hang hangs the run). For fast, trusted built-ins only; needs deadline_s: null.",
    )
    chunk_size: int = Field(
        64, ge=1, description="Samples per worker call: a hang or crash costs only its chunk, not the whole batch."
    )
    max_timeouts_per_batch: int = Field(
        2,
        ge=1,
        description="After this many timed-out chunks in one batch, the batch's remaining chunks get status "
        "timeout without running, bounding a batch's worst case to about this many deadlines.",
    )
    cache: bool = Field(False, description="Look results up in / store them to the Redis reward cache.")
    max_error_share: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="The run stops when this share of one step's samples get status error from this component "
        "(1.0: only when all do; timeouts and unparseable samples do not count).",
    )

    @field_validator("weight", "fallback")
    @classmethod
    def _finite(cls, v: float, info) -> float:
        if not math.isfinite(v):
            raise ValueError(f"{info.field_name} must be a finite number, got {v!r}")
        return v

    @model_validator(mode="after")
    def _check(self) -> RewardSpec:
        if (self.name is None) == (self.fn is None):
            raise ValueError(
                "give exactly one of 'name' (a built-in or entry point) or 'fn' ('package.module:function')"
            )
        if self.fn is not None and ":" not in self.fn:
            raise ValueError(f"fn {self.fn!r}: expected 'package.module:function'; for a registered name use 'name'")
        if self.in_process and self.deadline_s is not None:
            raise ValueError(
                "in_process: true cannot enforce deadline_s (a function cannot be killed in the caller's process); "
                "set deadline_s: null, or in_process: false to run it in a worker with a deadline"
            )
        return self

    @property
    def ref(self) -> str:
        """The reference that ``resolve_reward`` takes: ``name`` or ``fn``."""
        return self.name if self.name is not None else self.fn  # type: ignore[return-value]

    @property
    def component(self) -> str:
        """The component's name in records and metrics."""
        if self.label:
            return self.label
        if self.name is not None:
            return self.name
        return self.fn.rsplit(":", 1)[-1].rsplit(".", 1)[-1]  # type: ignore[union-attr]


class RewardsConfig(StrictModel):
    """All reward components plus the optional Redis cache used by components with ``cache: true``."""

    model_config = ConfigDict(frozen=True)

    components: list[RewardSpec] = Field(..., min_length=1, description="The reward components, summed by weight.")
    cache_url: str | None = Field(None, description="Redis URL of the reward cache; null: the run's own Redis.")
    cache_prefix: str = Field("rlpost:reward", description="Key prefix of the reward cache.")
    cache_ttl_s: int | None = Field(7 * 24 * 3600, gt=0, description="Expiry of cache entries [s]; null: never.")
    start_method: Literal["forkserver", "spawn"] = Field(
        "forkserver", description="How worker processes start (never fork: unsafe after torch/Ray threads start)."
    )

    @model_validator(mode="after")
    def _unique(self) -> RewardsConfig:
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.components):
            if spec.component in seen:
                raise ValueError(
                    f"components[{i}]: component name {spec.component!r} repeats components[{seen[spec.component]}]; "
                    "give one of them a distinct 'label'"
                )
            seen[spec.component] = i
        return self

    def problems(self) -> list[str]:
        """Everything that stops the components from running, found now (before any actor starts): a reward that
        does not resolve, cache: true without a version, params that do not bind to the function's keyword
        parameters (or to its declared options, e.g. the critic backend's). Each message names its config path."""
        from rlpost.rewards.registry import UNVERSIONED, param_problems, resolve_reward

        out = []
        for i, spec in enumerate(self.components):
            where = f"rewards.components[{i}]"
            try:
                entry = resolve_reward(spec.ref)
                bad_params = param_problems(entry, spec.params)
            except (KeyError, ImportError, AttributeError, TypeError, ValueError) as exc:
                out.append(f"{where} ({spec.ref}): {exc.args[0] if isinstance(exc, KeyError) and exc.args else exc}")
                continue
            if spec.cache and entry.version == UNVERSIONED:
                out.append(
                    f"{where} ({spec.ref}): cache: true needs a declared version (decorate it with "
                    "@register_reward(name, version=...) or set a 'reward_version' attribute), or set cache: false"
                )
            out += [f"{where}.params.{p.key}: {p.message}" for p in bad_params]
        return out

    def check_resolvable(self) -> None:
        """Raise ``ValueError`` listing every problem of ``problems()`` (one per line), if any."""
        found = self.problems()
        if found:
            raise ValueError("\n  ".join(found))
