"""`rlpost experiment table9` end to end on CPU: two arms (expert frozen / trained by flow loss), one seed, real Ray,
vLLM, DeepSpeed and Redis; then the paired held-out evaluation through one vLLM engine and the report."""

import json

import pyarrow.parquet as pq
import pytest
import torch

pytestmark = pytest.mark.integration


def test_table9_trains_arms_evaluates_paired_and_reports(tmp_path, tiny_checkpoint_with_expert, redis_url):
    from rlpost.apps.table9 import ARMS, table9
    from rlpost.policy.expert import FlowActionExpert
    from rlpost.rl.config import RunConfig
    from rlpost.storage.store import StepFiles
    from synthetic_policy import make_scenarios

    base = RunConfig(
        name="t9test", redis_url=redis_url,
        rewards={"components": [{"name": n, "in_process": True, "deadline_s": None}
                                for n in ("reasoning_critic", "coc_consistency", "trajectory_quality")]},
        rollout={"group_size": 2}, learner={"micro_batch": 4, "lr": 2e-3, "expert_lr": 1e-2},
        trainer={"steps": 2, "scenarios_per_step": 2, "eval_scenarios": 2, "eval_samples": 1, "checkpoint_every": 2})
    arms = [a for a in ARMS if a.name in ("reasoning", "reasoning_consistency_safety_expert_flow")]
    pool, held_out = make_scenarios(8, "train"), make_scenarios(3, "val", seed=1)
    report = table9(base, str(tiny_checkpoint_with_expert), pool, held_out, 1, tmp_path, arms, samples=2)

    text = report.read_text()
    assert "| SFT |" in text and "+ RL, reasoning reward only" in text and "expert trained by flow loss" in text
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert set(results) == {"sft", "reasoning", "reasoning_consistency_safety_expert_flow"}
    for summary in (results["sft"][0], results["reasoning"][0]):
        assert summary["scenarios"] == 3 and summary["samples"] == 6
        assert {"token_ade", "expert_ade", "reasoning", "consistency", "collision"} <= set(summary["most_likely"])
    rows = pq.read_table(tmp_path / "reasoning-seed0" / "table9_eval.parquet").to_pylist()
    assert len(rows) == 6 and all(r["seq_logprob"] < 0 for r in rows)
    # The frozen arm exports the SFT expert unchanged; the flow arm's expert moved; only it logs a flow loss.
    sft = FlowActionExpert.load(tiny_checkpoint_with_expert).state_dict()
    frozen = FlowActionExpert.load(tmp_path / "reasoning-seed0" / "policy").state_dict()
    flow = FlowActionExpert.load(tmp_path / "reasoning_consistency_safety_expert_flow-seed0" / "policy").state_dict()
    assert all(torch.equal(frozen[k], v) for k, v in sft.items())
    assert any(not torch.equal(flow[k], v) for k, v in sft.items())
    logged = [json.loads(x) for x in (tmp_path / "reasoning_consistency_safety_expert_flow-seed0" / "metrics.jsonl")
              .read_text().splitlines()]
    assert all(r["expert/flow_loss"] > 0 for r in logged if "time/step_s" in r)
    # Reward weights per arm: the reasoning-only run's total is its critic value alone.
    run = StepFiles(tmp_path / "reasoning-seed0" / "rollouts").read().to_pylist()
    assert len(run) == 2 * 2 * 2
    for r in run:
        assert r["reward_total"] == pytest.approx(0.2 * r["reward.reasoning_critic.value"])
        assert r["reward.coc_consistency.status"] is not None and r["reward.trajectory_quality.status"] is not None
    # A second call reuses the finished runs and cached evaluations.
    messages = []
    table9(base, str(tiny_checkpoint_with_expert), pool, held_out, 1, tmp_path, arms, samples=2, log=messages.append)
    assert sum("finished earlier" in m for m in messages) == 2
