"""`rlpost experiment table9`: AR1's Table-9 reward ablation and the flow-expert question (docs/design.md §5, §6).

From one SFT checkpoint, GRPO arms that differ only in their reward weights, and one arm in what happens to the
flow-matching expert (see :data:`ARMS`). Every arm × seed is an ordinary ``rlpost train`` run in its own folder
(finished runs are reused, so an interrupted experiment resumes). Afterwards the SFT checkpoint and every final
policy are evaluated on the same held-out scenarios with the same sampling seeds (paired across arms):

- K samples per scenario (6, as in AR1) at the rollout temperature, phase-constrained, through one vLLM engine that
  takes each policy's weights by ``reload_weights`` (the same path as training's weight sync);
- per sample: token-decoder ADE@6.4s, flow-expert ADE@6.4s (the expert conditioned on that sample's prompt + trace,
  deterministic from zero noise), reasoning grade (rubric critic 0–5), consistency (``coc_consistency``), collision
  with the agents' logged futures (ego box 4×2 m), and the sequence log-prob;
- "most likely": the sample with the highest sequence log-prob (AR1 reports the most likely of 6); "mean": the
  average over all K samples.

The SFT row is evaluated with each seed's sampling seed too, so its ± shows the evaluation noise alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from rlpost.common.config import ConfigError, load_config
from rlpost.common.errors import UserError
from rlpost.rl.config import RunConfig

ABLATION_CONFIG = "configs/table9.yaml"


@dataclass(frozen=True)
class Arm:
    """One row of the ablation: reward weights by component name (0 = computed and logged, not rewarded) and the
    expert's treatment during RL."""

    name: str
    label: str
    weights: dict
    expert: Literal["frozen", "flow"] = "frozen"
    expert_lr: float | None = None  # None: the base config's learner.expert_lr
    params: dict = field(default_factory=dict)  # component name -> reward params replacing the base's


# The relative weights of the default run (0.2 critic : 1 consistency : 1 trajectory quality); with std-normalised
# group advantages only their ratios matter, so arm "reasoning" is the critic alone at any positive weight.
ARMS = (
    Arm("reasoning", "+ RL, reasoning reward only",
        {"reasoning_critic": 0.2, "coc_consistency": 0.0, "trajectory_quality": 0.0}),
    Arm("reasoning_consistency", "+ RL, reasoning + consistency",
        {"reasoning_critic": 0.2, "coc_consistency": 1.0, "trajectory_quality": 0.0}),
    Arm("reasoning_consistency_safety", "+ RL, reasoning + consistency + safety",
        {"reasoning_critic": 0.2, "coc_consistency": 1.0, "trajectory_quality": 1.0}),
    Arm("reasoning_consistency_safety_expert_flow", "+ RL, all three, expert trained by flow loss",
        {"reasoning_critic": 0.2, "coc_consistency": 1.0, "trajectory_quality": 1.0}, expert="flow"),
    # A fresh AdamW moves every expert weight by ~lr in its first steps; the slower variant checks that sensitivity.
    Arm("reasoning_consistency_safety_expert_flow_lr1e-4", "+ RL, all three, expert trained by flow loss at lr 1e-4",
        {"reasoning_critic": 0.2, "coc_consistency": 1.0, "trajectory_quality": 1.0}, expert="flow", expert_lr=1e-4),
    # trajectory_quality's default collision weight (1 = an RMS position error of ~3.2 m) is small beside its L2 term
    # at the tiny policy's ~3.5 m errors; this arm makes one collision cost as much as an RMS error of ~7 m.
    Arm("reasoning_consistency_safety_collision5", "+ RL, all three, collision weight 5",
        {"reasoning_critic": 0.2, "coc_consistency": 1.0, "trajectory_quality": 1.0},
        params={"trajectory_quality": {"lambda_collision": 5.0}}),
)

def arm_config(base: RunConfig, arm: Arm, seed: int, out: Path, checkpoint: str) -> RunConfig:
    """The run config of one arm × seed: ``base`` with the arm's reward weights, expert mode, seed and folder."""
    components = []
    names = {c.name for c in base.rewards.components}
    missing = set(arm.weights) - names
    if missing:
        raise ConfigError(f"arm {arm.name}: reward components {sorted(missing)} are not in the base config's rewards "
                         f"({sorted(n for n in names if n)})")
    for c in base.rewards.components:
        components.append(c.model_copy(update={"weight": arm.weights.get(c.name, c.weight),
                                               "params": {**c.params, **arm.params.get(c.name, {})}}))
    cfg = base.model_copy(update={"out": str(out), "name": f"t9-{arm.name}-s{seed}", "init_checkpoint": checkpoint},
                          deep=True)
    cfg.rewards = cfg.rewards.model_copy(update={"components": components})
    cfg.learner.expert = arm.expert
    if arm.expert_lr is not None:
        cfg.learner.expert_lr = arm.expert_lr
    cfg.trainer.seed = seed
    return RunConfig.model_validate(cfg.model_dump())  # re-validate the edited tree


@dataclass
class HeldOutEvaluator:
    """One vLLM engine (built from the SFT checkpoint) that evaluates any policy with the same tokenizer by loading
    its weights; the torch backbone and expert of that policy give the expert's trajectories."""

    checkpoint: str
    base: RunConfig
    samples: int = 6

    def __post_init__(self):
        self.engine = None  # started by the first evaluation (a rerun with every result cached needs none)
        self.loaded = 0

    def evaluate(self, policy_dir: str | Path, scenarios: list, seed: int) -> list[dict]:
        """One row per (scenario, sample) of ``policy_dir`` on ``scenarios`` with sampling seed ``seed``."""
        import torch

        from rlpost.policy.generate import expert_controls
        from rlpost.policy.model import load_policy
        from rlpost.rl.rollout import GenerateRequest
        from rlpost.rl.weights import pack_weights

        if self.engine is None:
            from rlpost.rl.rollout import RolloutEngine

            self.engine = RolloutEngine(self.checkpoint, self.base.rollout, seed=0)
        policy = load_policy(policy_dir)
        self.loaded += 1
        with torch.no_grad():
            self.engine.load_weights(pack_weights(policy.backbone.named_parameters(), self.loaded))
        records = self.engine.generate(GenerateRequest(scenarios, self.samples, "table9-eval", 0, 10_000 + seed),
                                       temperature=self.base.rollout.temperature)
        self._check_loaded(policy, records[0].prompt_ids + records[0].completion_ids, policy_dir)
        expert = None
        if policy.expert is not None:
            expert = expert_controls(policy, [r.prompt_ids for r in records], [r.completion_ids for r in records],
                                     num_samples=1)[:, 0]
        return sample_rows(records, {s.scenario_id: s for s in scenarios}, expert)

    def _check_loaded(self, policy, sequence: list[int], policy_dir) -> None:
        """The engine must now score like ``policy``'s torch backbone (the sync probe of training)."""
        from rlpost.rl.learner import sequence_logprobs

        want = np.asarray(sequence_logprobs(policy.backbone, sequence))
        gap = float(np.abs(np.asarray(self.engine.probe_logprobs(sequence)) - want).mean())
        if gap > self.base.sync.probe_tolerance:
            raise RuntimeError(f"{policy_dir}: the evaluation engine's log-probs differ from the checkpoint's by "
                               f"{gap:.1e} after loading its weights; was it trained from {self.checkpoint}?")


def sample_rows(records: list, by_id: dict, expert: np.ndarray | None) -> list[dict]:
    """Metrics of every sampled completion. A completion whose trajectory does not decode counts with the
    constant-velocity trajectory for ADE and collision (and ``decoded`` = False), so no sample drops out."""
    from rlpost.apps.evaluate import agent_boxes, constant_velocity
    from rlpost.domain.metrics import ade, collides
    from rlpost.domain.trajectory import unicycle_rollout
    from rlpost.rewards.coc_consistency import coc_consistency
    from rlpost.rewards.critic import reasoning_critic

    comps = [r.completion() for r in records]
    scen = [by_id[r.scenario_id] for r in records]
    consistency = coc_consistency(comps, scen)
    grades = reasoning_critic(comps, scen, backend="rubric", normalise=False)
    rows = []
    for i, (r, s) in enumerate(zip(records, scen)):
        v0, gt = float(s.history[-1, 3]), np.asarray(s.future, dtype=np.float64)
        states = r.waypoints if r.waypoints is not None else constant_velocity(v0)
        boxes, valid = agent_boxes(s)
        row = {"scenario_id": r.scenario_id, "sample": r.group_index, "seq_logprob": float(np.sum(r.sampler_logprobs)),
               "decoded": r.waypoints is not None, "token_ade": ade(states[:, :2], gt[:, :2]),
               "consistency": float(consistency[i].value),
               "reasoning": float(grades[i].value) if grades[i].status in ("ok", "unparseable") else np.nan,
               "collision": bool(collides(states, boxes, valid)) if boxes.shape[0] else False}
        if expert is not None:
            row["expert_ade"] = ade(unicycle_rollout(expert[i], v0)[:, :2], gt[:, :2])
        rows.append(row)
    return rows


METRICS = ("token_ade", "expert_ade", "reasoning", "consistency", "collision", "decoded")


def summarise(rows: list[dict]) -> dict:
    """{"most_likely": {metric: mean}, "mean": {metric: mean}} over scenarios; most likely = highest sequence
    log-prob among a scenario's samples."""
    by_scenario: dict[str, list[dict]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario_id"], []).append(row)
    best = [max(group, key=lambda r: r["seq_logprob"]) for group in by_scenario.values()]

    def means(selected):
        return {m: float(np.nanmean([float(r[m]) for r in selected])) for m in METRICS if m in selected[0]}

    return {"most_likely": means(best), "mean": means(rows), "scenarios": len(by_scenario), "samples": len(rows)}


def run_table9(seeds: int, out: str, config: str = ABLATION_CONFIG, overrides: list[str] = (),
               arms: list[str] | None = None, eval_scenarios: int = 128, samples: int = 6, log=print) -> Path:
    """`rlpost experiment table9`: load the base config, data and SFT checkpoint, then :func:`table9`."""
    from rlpost.apps.pipeline import prepare

    base = load_config(RunConfig, config, list(overrides))
    unknown = set(arms or ()) - {a.name for a in ARMS}
    if unknown:
        raise UserError(f"--arms: unknown {sorted(unknown)}; choose from {[a.name for a in ARMS]}")
    chosen = [a for a in ARMS if arms is None or a.name in arms]
    prep = prepare(base, eval_scenarios, log)
    described = {"config": config, "overrides": list(overrides)}
    return table9(base, prep.checkpoint, prep.pool, prep.held_out, seeds, Path(out), chosen, samples, described, log)


def table9(base: RunConfig, checkpoint: str, pool: list, held_out: list, seeds: int, study: Path, arms=ARMS,
           samples: int = 6, described: dict | None = None, log=print) -> Path:
    """Train every arm × seed from ``checkpoint`` on ``pool``, evaluate the SFT checkpoint and every final policy
    on ``held_out`` (K = ``samples``), and write ``report.md``, ``curves.png`` and ``results.json`` into ``study``."""
    from rlpost.apps.table9_report import write_table9_report
    from rlpost.loop.train import train

    study.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    runs: dict[str, list[Path]] = {}
    for seed in range(seeds):
        for arm in arms:
            run_dir = study / f"{arm.name}-seed{seed}"
            runs.setdefault(arm.name, []).append(run_dir)
            if (run_dir / "policy" / "rlpost_model.json").is_file():
                log(f"[table9] {run_dir} finished earlier; reusing it")
                continue
            log(f"[table9] {arm.name} seed {seed} -> {run_dir} ({time.time() - t0:.0f} s so far)")
            cfg = arm_config(base, arm, seed, run_dir, checkpoint)
            train(cfg, checkpoint, pool, held_out[: cfg.trainer.eval_scenarios], log=log)
    t_train = time.time() - t0
    evaluator = HeldOutEvaluator(checkpoint, base, samples)
    results: dict[str, list[dict]] = {"sft": [_evaluated(evaluator, checkpoint, study / f"sft-eval-seed{seed}",
                                                         held_out, seed, log) for seed in range(seeds)]}
    for arm in arms:
        results[arm.name] = [_evaluated(evaluator, run / "policy", run, held_out, seed, log)
                             for seed, run in enumerate(runs[arm.name])]
    meta = {"checkpoint": checkpoint, "config": "", "overrides": [], **(described or {}), "seeds": seeds,
            "eval_scenarios": len(held_out), "samples": samples, "steps": base.trainer.steps,
            "batch": base.trainer.scenarios_per_step * base.rollout.group_size, "lr": base.learner.lr,
            "train_seconds": round(t_train), "total_seconds": round(time.time() - t0)}
    report = write_table9_report(study, results, runs, list(arms), meta)
    log(f"[table9] {len(arms)} arms x {seeds} seeds in {time.time() - t0:.0f} s; report {report}")
    return report


def _evaluated(evaluator: HeldOutEvaluator, policy_dir, folder: Path, scenarios: list, seed: int, log) -> dict:
    """The summary of one policy × seed, cached in ``folder/table9_eval.json`` (per-sample rows beside it)."""
    cached = Path(folder) / "table9_eval.json"
    if cached.is_file():
        summary = json.loads(cached.read_text())
        if summary.get("scenarios") == len(scenarios) and summary.get("k") == evaluator.samples:
            return summary
    t0 = time.time()
    rows = evaluator.evaluate(policy_dir, scenarios, seed)
    summary = summarise(rows) | {"k": evaluator.samples, "seed": seed, "policy": str(policy_dir),
                                 "seconds": round(time.time() - t0, 1)}
    Path(folder).mkdir(parents=True, exist_ok=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), Path(folder) / "table9_eval.parquet")
    cached.write_text(json.dumps(summary, indent=1))
    ml = summary["most_likely"]
    log(f"[table9] eval {policy_dir} seed {seed}: ADE token {ml['token_ade']:.3f} expert "
        f"{ml.get('expert_ade', float('nan')):.3f} reasoning {ml['reasoning']:.2f} consistency "
        f"{ml['consistency']:.3f} collision {ml['collision']:.3f} ({summary['seconds']} s)")
    return summary
