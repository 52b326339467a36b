"""The contract test a reward plugin's author runs against their own function (and ``rlpost rewards check``).

    from rlpost.rewards.contract import check_reward

    def test_my_reward_meets_the_contract():
        report = check_reward("mypkg.rewards:lane_bonus", params={"bonus": 0.2})
        assert report.passed, report.summary()

Checks, each reported with a message that says what to fix:
  resolves       the reference resolves to a callable (name, dotted path or the callable itself)
  version        it declares a version (``@register_reward(name, version=...)`` or a ``reward_version`` attribute)
  signature      it accepts ``(completions, scenarios, **params)``
  worker         it is importable by reference, so it can run in a worker process with a deadline
  shapes         one result per sample for batches of n, 1 and 0; every status valid; no error/timeout
  valid_samples  expert-like completions are scored with status ok
  determinism    the same batch twice gives the same values and statuses
  batch_independence  a sample's result does not depend on the rest of the batch (alone, reversed order)
  garbage        random, truncated or empty text, missing / NaN / inf / huge / wrong-shape controls: no error or
                 timeout, a status on every sample
  speed          at least ``min_samples_per_s`` on one core (measured in this process)
Calls run in a worker process with ``deadline_s`` when the function is importable by reference (a hanging plugin
then fails the check instead of hanging the test), else in this process.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlpost.rewards.guard import GuardedReward, call_reward
from rlpost.rewards.registry import UNVERSIONED, RewardEntry, _entry_from_callable, param_problems, resolve_reward
from rlpost.rewards.synthetic import expert_completion, garbage_completion, synthetic_scenarios
from rlpost.rewards.types import STATUSES, RewardResult


@dataclass(frozen=True)
class ContractCheck:
    """One check: its name, whether it passed, and a message (the fix, when it failed)."""

    name: str
    passed: bool
    message: str = ""


@dataclass
class ContractReport:
    """The outcome of ``check_reward``: every check, and the measured throughput (samples/s, None if not run)."""

    reward: str
    version: str
    checks: list[ContractCheck] = field(default_factory=list)
    samples_per_s: float | None = None

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    def summary(self) -> str:
        """A readable table of the checks, for assertion messages and the CLI."""
        lines = [f"reward {self.reward} (version {self.version}): {'PASSED' if self.passed else 'FAILED'}"]
        for c in self.checks:
            lines.append(f"  [{'ok' if c.passed else 'FAIL'}] {c.name}" + (f": {c.message}" if c.message else ""))
        return "\n".join(lines)


def _entry(fn: str | Callable[..., Any]) -> RewardEntry:
    if isinstance(fn, str):
        return resolve_reward(fn)
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    ref = f"{module}:{qualname}" if module and qualname else repr(fn)
    return _entry_from_callable(fn, ref, "dotted", getattr(fn, "__name__", type(fn).__name__))


def _importable(entry: RewardEntry) -> str:
    """'' if ``entry.ref`` resolves back to the same object in a fresh lookup and it pickles, else why not."""
    if "<locals>" in entry.ref or "<lambda>" in entry.ref:
        return f"{entry.ref} is a local function or lambda"
    try:
        again = resolve_reward(entry.ref) if ":" in entry.ref else None
    except Exception as exc:  # the reason is reported, not raised
        return f"{entry.ref} does not resolve: {exc}"
    if again is None or again.fn is not entry.fn:
        return f"{entry.ref} does not resolve back to the same object"
    try:
        pickle.dumps(entry.fn)
    except Exception as exc:
        return f"it cannot be pickled by reference: {exc}"
    return ""


def _same(a: Sequence[RewardResult], b: Sequence[RewardResult], tol: float = 1e-9) -> bool:
    return len(a) == len(b) and all(
        x.status == y.status and abs(x.value - y.value) <= tol * max(1.0, abs(x.value)) for x, y in zip(a, b)
    )


def _bad(results: Sequence[RewardResult]) -> str:
    for i, r in enumerate(results):
        if r.status not in STATUSES:
            return f"sample {i}: status {r.status!r}"
        if r.status in ("error", "timeout"):
            return f"sample {i}: {r.status}: {r.info.get('error', '')}"
    return ""


def check_reward(
    fn: str | Callable[..., Any],
    scenarios: Sequence[Any] | None = None,
    *,
    params: dict[str, Any] | None = None,
    batch_size: int = 48,
    n_garbage: int = 300,
    min_samples_per_s: float = 50.0,
    deadline_s: float = 30.0,
    seed: int = 0,
) -> ContractReport:
    """Run the plugin contract (module docstring) on ``fn`` (a reference string or the callable).

    scenarios: the scenarios to test on (default: ``synthetic_scenarios(8)``); params: the reward's keyword
    params; batch_size: samples per batch (G = 4 noisy expert completions per scenario); n_garbage: broken
    completions fed in; min_samples_per_s: the speed floor; deadline_s: per-call limit in the worker.
    Never raises because of the plugin: every failure is a failed check in the report.
    """
    params = dict(params or {})
    try:
        entry = _entry(fn)
    except Exception as exc:
        return ContractReport(str(fn), "?", [ContractCheck("resolves", False, str(exc))])
    report = ContractReport(entry.name, entry.version, [ContractCheck("resolves", True, entry.ref)])
    add = report.checks.append
    add(ContractCheck("version", entry.version != UNVERSIONED,
                      "" if entry.version != UNVERSIONED else "declare one: @register_reward(name, version='1')"))
    scen = list(scenarios) if scenarios is not None else synthetic_scenarios(8, seed=seed)
    problems = param_problems(entry, params)
    add(ContractCheck("signature", not problems, "; ".join(f"params.{p.key}: {p.message}" for p in problems)))
    if problems:
        return report
    why = _importable(entry)
    add(ContractCheck("worker", not why, why and f"{why}: define it at module top level so it can run with a deadline"))
    guard = GuardedReward(entry, params, deadline_s=None if why else deadline_s, in_process=bool(why),
                          chunk_size=max(batch_size, n_garbage), max_timeouts_per_batch=1)
    try:
        _behaviour_checks(report, guard, scen, batch_size, n_garbage, seed)
        report.samples_per_s = _speed(report, entry, params, scen, batch_size, min_samples_per_s, seed)
    finally:
        guard.close()
    return report


def _behaviour_checks(report: ContractReport, guard: GuardedReward, scen: list, batch_size: int, n_garbage: int,
                      seed: int) -> None:
    add = report.checks.append
    comps = [expert_completion(scen[i % len(scen)], i // len(scen), noise=0.3 * (i >= len(scen)), seed=seed)
             for i in range(batch_size)]
    scens = [scen[i % len(scen)] for i in range(batch_size)]

    def run(c, s):
        return guard(c, s)[0]

    first = run(comps, scens)
    problems = [p for p in (_bad(first), _bad(run(comps[:1], scens[:1]))) if p]
    empty = run([], [])
    if empty:
        problems.append(f"an empty batch gave {len(empty)} results")
    add(ContractCheck("shapes", not problems, "; ".join(problems)))
    unparsed = [i for i, r in enumerate(first) if r.status == "unparseable"]
    add(ContractCheck("valid_samples", not unparsed,
                      unparsed and f"expert-like samples {unparsed[:5]} scored unparseable: "
                                   f"{first[unparsed[0]].info.get('reason', '')}"))
    add(ContractCheck("determinism", _same(first, run(comps, scens)),
                      "" if _same(first, run(comps, scens)) else "two calls on the same batch differ"))
    k = min(8, batch_size)
    alone = [run([c], [s])[0] for c, s in zip(comps[:k], scens[:k])]
    reverse = run(comps[::-1], scens[::-1])[::-1]
    independent = _same(alone, first[:k]) and _same(reverse, first)
    add(ContractCheck("batch_independence", independent,
                      "" if independent else "a sample's result changes with the other samples of its batch or "
                                             "their order (results must be aligned with the inputs)"))
    rng = np.random.default_rng(seed)
    garbage_scen = [scen[i % len(scen)] for i in range(n_garbage)]
    garbage = [garbage_completion(s, rng, i) for i, s in enumerate(garbage_scen)]
    g = run(garbage, garbage_scen)
    bad = _bad(g)
    add(ContractCheck("garbage", not bad and len(g) == n_garbage,
                      bad and f"on garbage input (should be status unparseable, not a failure): {bad}"))


def _speed(report: ContractReport, entry: RewardEntry, params: dict, scen: list, batch_size: int,
           floor: float, seed: int) -> float | None:
    """Samples/s of direct calls (in this process, no worker hop) over ~0.3 s; a failed check below ``floor``."""
    failed = {c.name for c in report.checks if not c.passed} & {"shapes", "valid_samples", "garbage"}
    if failed:  # a function that fails on valid input has no meaningful speed (nor is it safe to call again here)
        report.checks.append(ContractCheck("speed", False, f"not measured: {', '.join(sorted(failed))} failed"))
        return None
    comps = [expert_completion(scen[i % len(scen)], i, noise=0.3, seed=seed) for i in range(batch_size)]
    scens = [scen[i % len(scen)] for i in range(batch_size)]
    done, start = 0, time.perf_counter()
    while True:
        call_reward(entry, params, comps, scens, 0.0, None)
        done += batch_size
        elapsed = time.perf_counter() - start
        if elapsed > 0.3 or done >= 50 * batch_size:
            break
    rate = done / elapsed
    report.checks.append(ContractCheck("speed", rate >= floor, f"{rate:,.0f} samples/s (floor {floor:,.0f})"))
    return rate
