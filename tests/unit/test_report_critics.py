"""The report's judge-vs-rubric agreement on a run's rollouts, and the demo config that switches to the judge."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rlpost.apps.pipeline import critic_pair
from rlpost.apps.report import critic_agreement
from rlpost.common.config import load_config
from rlpost.rl.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]


def test_agreement_counts_only_samples_both_critics_graded(tmp_path):
    (tmp_path / "rollouts").mkdir()
    table = pa.table({
        "reward.reasoning_critic.value": [1.0, 0.6, 0.4, 0.0, 0.0],
        "reward.reasoning_critic.status": ["ok", "ok", "ok", "timeout", "unparseable"],
        "reward.rubric_critic.value": [1.0, 0.8, 0.0, 0.2, 0.0],
        "reward.rubric_critic.status": ["ok", "ok", "ok", "ok", "unparseable"],
    })
    pq.write_table(table, tmp_path / "rollouts" / "part-0.parquet")
    a = critic_agreement(tmp_path, "reasoning_critic", "rubric_critic")
    # graded by both: grades (5,5), (3,4), (2,0), (0,0); the timed-out sample is left out
    assert a == {"n": 4, "rollouts": 5, "exact": 0.5, "within_1": 0.75, "mean_abs_diff": 0.75}
    assert critic_agreement(tmp_path, "reasoning_critic", "missing_critic") is None


def test_demo_judge_config_uses_the_judge_and_logs_the_rubric():
    cfg = load_config(RunConfig, ROOT / "configs" / "tiny_judge.yaml", [])
    assert critic_pair(cfg) == ("reasoning_critic", "rubric_critic")
    weights = {s.component: (s.weight, s.params.get("backend")) for s in cfg.rewards.components}
    assert weights["reasoning_critic"] == (0.2, "judge") and weights["rubric_critic"] == (0.0, "rubric")
    assert cfg.rewards.problems() == []
    assert critic_pair(load_config(RunConfig, ROOT / "configs" / "tiny.yaml", [])) is None  # the demo: rubric only
