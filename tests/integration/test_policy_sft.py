"""A tiny DeepSpeed SFT run (gloo, CPU) lowers the loss and writes a checkpoint that loads and evaluates."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    from rlpost.policy.config import ModelConfig, SFTConfig
    from rlpost.policy.sft import run_sft
    from synthetic_policy import make_scenarios

    out = tmp_path_factory.mktemp("sft")
    cfg = SFTConfig(steps=40, batch_size=8, lr=3e-3, warmup_steps=4, eval_every=20, eval_scenarios=8, out=str(out),
                    progress=False, zero_stage=1)
    return run_sft(ModelConfig(), cfg, make_scenarios(48), make_scenarios(8, "val", seed=1), log=lambda *_: None)


def test_loss_goes_down(sft_run):
    evals = [r for r in sft_run.history if "val_loss" in r]
    train = [r for r in sft_run.history if "train_loss" in r]
    assert len(evals) == 2 and sft_run.steps == 40
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert train[-1]["train_ce_traj"] < 0.6 * train[0]["train_ce_traj"]
    assert all(r["train_flow"] == r["train_flow"] for r in train)  # finite; its learning is tested in the unit tier


def test_checkpoint_loads_and_evaluates(sft_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlpost.apps.evaluate import run_eval
    from rlpost.policy.config import EvalConfig
    from synthetic_policy import make_scenarios

    ckpt = sft_run.checkpoint
    assert AutoModelForCausalLM.from_pretrained(str(ckpt)).config.model_type == "qwen2"
    assert AutoTokenizer.from_pretrained(str(ckpt)).eos_token == "<|traj_end|>"
    summary = run_eval(ckpt, EvalConfig(num_samples=2, out=str(tmp_path)), make_scenarios(8, "val", seed=2),
                       log=lambda *_: None)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["traj_valid_rate"] == 1.0 and saved["scenarios"] == 8
    for key in ("token_ade", "expert_ade", "cv_ade", "token_min_ade_2", "decision_accuracy", "collision_rate"):
        assert summary[key] is not None
    assert (tmp_path / "eval.parquet").exists()


def test_cli_config_and_errors(tmp_path):
    from rlpost.apps.policy_cli import load_policy_config
    from rlpost.common.config import ConfigError

    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("model: {size: tiny, num_bins: 64}\nsft: {steps: 5}\ntrainer: {whatever: 1}\n")
    cfg = load_policy_config(str(cfg_file), ["sft.lr=1e-4"])
    assert cfg.model.num_bins == 64 and cfg.sft.steps == 5 and cfg.sft.lr == 1e-4
    with pytest.raises(ConfigError, match="sft.grad_accum"):
        load_policy_config(str(cfg_file), ["sft.grad_accum=3"])
    with pytest.raises(ConfigError, match="model.stepz|stepz"):
        load_policy_config(str(cfg_file), ["model.stepz=3"])
