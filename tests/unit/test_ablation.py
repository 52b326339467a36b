"""The Table-9 experiment's pure parts: arm configs, most-likely selection, verdicts, expert inputs, the report."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlpost.apps.table9 import ARMS, arm_config, summarise
from rlpost.apps.table9_report import findings, verdict, write_table9_report
from rlpost.common.config import load_config
from rlpost.rl.config import RunConfig

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "table9.yaml"


def test_arm_config_reweights_rewards_and_sets_the_expert_mode(tmp_path):
    base = load_config(RunConfig, CONFIG)
    arms = {a.name: a for a in ARMS}
    cfg = arm_config(base, arms["reasoning"], 2, tmp_path / "r", "ckpt")
    weights = {c.name: c.weight for c in cfg.rewards.components}
    assert weights == {"reasoning_critic": 0.2, "coc_consistency": 0.0, "trajectory_quality": 0.0}
    assert cfg.trainer.seed == 2 and cfg.out == str(tmp_path / "r") and cfg.init_checkpoint == "ckpt"
    assert cfg.learner.expert == "frozen" and base.rewards.components[1].weight == 1.0  # base untouched
    collision = arm_config(base, arms["reasoning_consistency_safety_collision5"], 0, tmp_path / "c", "ckpt")
    assert ([c.params for c in collision.rewards.components if c.name == "trajectory_quality"]
            == [{"lambda_collision": 5.0}])
    assert all(c.params == {} for c in cfg.rewards.components)
    slow = arm_config(base, arms["reasoning_consistency_safety_expert_flow_lr1e-4"], 0, tmp_path / "s", "ckpt")
    assert slow.learner.expert_lr == 1e-4 and cfg.learner.expert_lr == base.learner.expert_lr
    flow = arm_config(base, arms["reasoning_consistency_safety_expert_flow"], 0, tmp_path / "f", "ckpt")
    assert flow.learner.expert == "flow"
    assert {c.name: c.weight for c in flow.rewards.components}["trajectory_quality"] == 1.0


def test_arm_config_names_a_reward_the_base_lacks(tmp_path):
    base = load_config(RunConfig, CONFIG, ["rewards.components=[{name: trajectory_quality}]"])
    with pytest.raises(ValueError, match="arm reasoning: reward components .*coc_consistency"):
        arm_config(base, ARMS[0], 0, tmp_path, "ckpt")


def _row(sid, k, logp, ade, consistency=1.0):
    return {"scenario_id": sid, "sample": k, "seq_logprob": logp, "token_ade": ade, "expert_ade": ade + 1,
            "reasoning": 4.0, "consistency": consistency, "collision": False, "decoded": True}


def test_summarise_takes_the_most_likely_sample_per_scenario_and_the_mean_of_all():
    rows = [_row("a", 0, -5.0, 1.0), _row("a", 1, -2.0, 3.0, 0.0), _row("b", 0, -1.0, 2.0), _row("b", 1, -9.0, 6.0)]
    s = summarise(rows)
    assert s["most_likely"]["token_ade"] == pytest.approx((3.0 + 2.0) / 2)
    assert s["most_likely"]["consistency"] == pytest.approx(0.5)
    assert s["mean"]["token_ade"] == pytest.approx(3.0) and s["mean"]["expert_ade"] == pytest.approx(4.0)
    assert s["scenarios"] == 2 and s["samples"] == 4


@pytest.mark.parametrize("deltas, direction, expected", [
    ([0.1, 0.2, 0.05], +1, "reproduces"),
    ([0.3, -0.05, 0.1], +1, "direction only (seeds disagree)"),
    ([-0.1, -0.2, 0.0], +1, "does not reproduce"),
    ([-0.1, -0.2, -0.3], -1, "reproduces"),
    ([0.0, 0.0], -1, "does not reproduce"),
])
def test_verdict(deltas, direction, expected):
    assert verdict(np.array(deltas), direction) == expected


def _summary(ade, reasoning, consistency, collision):
    view = {"token_ade": ade, "expert_ade": ade - 0.2, "reasoning": reasoning, "consistency": consistency,
            "collision": collision, "decoded": 1.0}
    return {"most_likely": view, "mean": view, "scenarios": 4, "samples": 24}


def _results():
    # A run that behaves like the paper: reasoning-only hacks, consistency fixes it, safety cuts collisions.
    return {
        "sft": [_summary(3.0, 3.0, 0.70, 0.20), _summary(3.1, 3.1, 0.72, 0.21)],
        "reasoning": [_summary(3.2, 4.0, 0.60, 0.20), _summary(3.3, 4.2, 0.62, 0.22)],
        "reasoning_consistency": [_summary(2.8, 4.0, 0.85, 0.20), _summary(2.9, 4.1, 0.86, 0.20)],
        "reasoning_consistency_safety": [_summary(2.7, 4.0, 0.84, 0.10), _summary(2.9, 4.0, 0.85, 0.22)],
        "reasoning_consistency_safety_expert_flow": [_summary(2.7, 4.0, 0.84, 0.10), _summary(2.8, 4.0, 0.85, 0.1)],
        "reasoning_consistency_safety_expert_flow_lr1e-4": [_summary(2.7, 4.0, 0.84, 0.1),
                                                             _summary(2.9, 4.0, 0.85, 0.2)],
    }


def test_findings_are_checked_seed_by_seed_against_the_papers_direction():
    found = {f["claim"]: f for f in findings(_results())}
    hacking = found["the reasoning reward alone lowers consistency (reward hacking in language space)"]
    assert hacking["verdict"] == "reproduces"
    assert found["the reasoning reward alone raises the reasoning grade"]["paper"] == "3.1 → 4.5"
    safety = found["adding the safety reward lowers the collision rate"]
    assert safety["delta"] == pytest.approx([-0.10, 0.02]) and safety["verdict"] == "direction only (seeds disagree)"


def test_report_has_the_table_the_findings_the_expert_answer_and_curves(tmp_path):
    runs = {}
    for arm in ARMS:
        for seed in range(2):
            run = tmp_path / f"{arm.name}-seed{seed}"
            run.mkdir()
            rows = [{"step": -1, "eval/reward": -8.0}] + [
                {"step": s, "time/step_s": 1.0, "reward/reasoning_critic": 0.5 + 0.01 * s,
                 "reward/coc_consistency": 0.7, "reward/trajectory_quality": -5.0, "ade": 4.0 - 0.1 * s}
                for s in range(3)]
            (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
            runs.setdefault(arm.name, []).append(run)
    meta = {"checkpoint": "ckpt", "config": "configs/table9.yaml", "overrides": [], "seeds": 2, "eval_scenarios": 4,
            "samples": 6, "steps": 3, "batch": 64, "lr": 1e-4, "train_seconds": 1, "total_seconds": 2}
    report = write_table9_report(tmp_path, _results(), runs, ARMS, meta).read_text()
    assert "| SFT | 3.050 ± 0.050 |" in report and "| 2.12 | 3.1 | 0.62 | 6.9 |" in report
    assert "**reproduces**" in report and "expert trained by flow loss" in report and "lr 1e-4" in report
    assert "frozen expert's ADE by -0.250 ± 0.050 m" in report  # (2.5, 2.7) - (2.8, 2.9) paired
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta"]["seeds"] == 2 and len(saved["findings"]) == 7


def test_train_batch_marks_the_expert_prefix_and_carries_targets():
    from rlpost.rl.learner import make_train_batch

    batch = make_train_batch([[5, 6, 7], [5, 6]], [[8, 9, 10, 11], [8, 9]], [[0.0] * 4, [0.0] * 2], [1.0, -1.0], 0,
                             prefix_lengths=[5, 0], expert_targets=[np.zeros((64, 2)), np.ones((64, 2))])
    assert batch.prefix_mask.tolist() == [[True] * 5 + [False] * 2, [False] * 7]
    assert batch.expert_targets.shape == (2, 64, 2) and batch.expert_targets.dtype == torch.float32
    half = batch.slice(1, 2)
    assert half.prefix_mask.shape == (1, 7) and float(half.expert_targets.sum()) == 128.0
    assert make_train_batch([[1]], [[2]], [[0.0]], [0.0], 0).slice(0, 1).prefix_mask is None
    with pytest.raises(ValueError, match="prefix_lengths/expert_targets"):
        make_train_batch([[1]], [[2]], [[0.0]], [0.0], 0, prefix_lengths=[1])


def test_expert_inputs_cut_the_prefix_after_traj_start_and_prepare_targets_as_sft():
    from rlpost.loop.steps import expert_inputs
    from rlpost.policy.expert import normalise_controls

    tok = SimpleNamespace(id=lambda name: 99, bins=SimpleNamespace(accel_range=(-4.0, 4.0),
                                                                   curvature_range=(-0.15, 0.15)))
    records = [SimpleNamespace(scenario_id="s", prompt_ids=[1, 2, 3], completion_ids=[4, 5, 99, 7, 8]),
               SimpleNamespace(scenario_id="s", prompt_ids=[1, 2], completion_ids=[4, 5, 6])]
    controls = np.tile([0.5, 0.01], (64, 1))
    controls[10] = [9.0, 0.6]  # beyond the bins: clipped, as the SFT targets are
    speeds = np.full(64, 8.0)
    speeds[30:] = 0.5  # near standstill from step 31 on: curvature unobservable, target 0
    scenario = SimpleNamespace(expert_controls=controls, history=np.tile([0, 0, 0, 8.0], (20, 1)),
                               future=np.stack([np.zeros(64), np.zeros(64), np.zeros(64), speeds], -1))
    lengths, targets = expert_inputs(records, {"s": scenario}, tok)
    assert lengths == [3 + 3, 0]
    want = controls.copy()
    want[10] = [4.0, 0.15]
    want[31:, 1] = 0.0
    np.testing.assert_allclose(targets[0], normalise_controls(want))
    assert targets[1] is targets[0]  # one target per scenario
