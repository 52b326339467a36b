"""Bring your own model: ``model.path`` end to end for Llama, Qwen3 and Gemma3 checkpoints, each with its own
tokenizer (tests/byo_models.py): SFT from the folder (tokenizer extended, embeddings resized, tied heads kept) →
vLLM greedy = HF greedy on the SFT checkpoint, and a live weight update into vLLM that moves only the (tied)
embedding → a 2-step GRPO run on Ray (vLLM engine, DeepSpeed learner, reward actor, Redis) with every sync
verified by the loop's log-prob probe → held-out evaluation before and after."""

from __future__ import annotations

import gc
import json

import pytest
from byo_models import ARCHITECTURES

pytestmark = pytest.mark.integration

SFT_STEPS = 8


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from rlpost.actors.common import actor_env

    ray.init(num_cpus=2, include_dashboard=False, runtime_env=actor_env())
    yield
    ray.shutdown()


@pytest.fixture(scope="module", params=ARCHITECTURES)
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def base_dir(arch, tmp_path_factory):
    from byo_models import build_checkpoint

    return build_checkpoint(arch, tmp_path_factory.mktemp(f"base_{arch}"))


@pytest.fixture(scope="module")
def sft(arch, base_dir, tmp_path_factory):
    """A few real SFT steps (DeepSpeed, gloo) from the user's folder."""
    from rlpost.policy.config import ModelConfig, SFTConfig
    from rlpost.policy.sft import run_sft
    from synthetic_policy import make_scenarios

    model = ModelConfig(size=None, path=str(base_dir), max_trace_tokens=16,
                        expert={"hidden_size": 32, "num_layers": 1, "num_heads": 2})
    cfg = SFTConfig(steps=SFT_STEPS, batch_size=8, lr=3e-3, warmup_steps=0, eval_every=SFT_STEPS // 2, eval_scenarios=4,
                    out=str(tmp_path_factory.mktemp(f"sft_{arch}")), progress=False, zero_stage=1)
    return run_sft(model, cfg, make_scenarios(16), make_scenarios(4, "val", seed=1), log=lambda *_: None)


def test_sft_from_model_path(arch, base_dir, sft):
    """SFT trains the user's architecture: same class and tie as the folder, the vocabulary extended (rows
    rounded up to model.vocab_multiple), the base's special tokens kept out of the trace phase, the loss falls."""
    from safetensors import safe_open
    from transformers import AutoConfig

    from rlpost.policy.model import load_policy

    base, out = AutoConfig.from_pretrained(str(base_dir)), AutoConfig.from_pretrained(str(sft.checkpoint))
    assert out.architectures == base.architectures and out.model_type == base.model_type
    assert out.tie_word_embeddings == base.tie_word_embeddings == (arch != "llama")
    with safe_open(str(sft.checkpoint / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) == (arch == "llama")  # a tied head is stored once, as the embedding
    policy = load_policy(sft.checkpoint)
    tok, model = policy.tokenizer, policy.backbone
    rows = model.get_input_embeddings().weight.shape[0]
    assert base.vocab_size < tok.vocab_size <= rows < tok.vocab_size + 64 and rows % 64 == 0
    assert (model.lm_head.weight is model.get_input_embeddings().weight) == (arch != "llama")
    base_specials = {"llama": "<|end_of_text|>", "qwen3": "<|im_end|>", "gemma3": "<eos>"}[arch]
    assert tok.vocab[base_specials] not in set(tok.trace_ids.tolist())
    assert model.config.eos_token_id == tok.id("<|traj_end|>")
    evals = [r for r in sft.history if "val_loss" in r]
    assert sft.steps == SFT_STEPS and len(evals) == 2 and evals[-1]["val_loss"] < evals[0]["val_loss"]


@pytest.fixture(scope="module")
def engine(sft):
    """The rollout engine (vLLM, in process) on the SFT checkpoint, as a rollout worker runs it."""
    pytest.importorskip("vllm")
    from rlpost.rl.config import RolloutConfig
    from rlpost.rl.rollout import RolloutEngine

    e = RolloutEngine(sft.checkpoint, RolloutConfig(group_size=2, in_process=True))
    yield e
    del e
    gc.collect()


def test_vllm_greedy_equals_hf_and_follows_a_tied_embedding_update(arch, sft, engine):
    """vLLM greedy = HF greedy after the extension and resize; a weights message that changes only the input
    embedding (for a tied model: the head too, sent once under the embedding's name) moves vLLM exactly where it
    moves HF."""
    import torch

    from rlpost.policy.generate import hf_generate, prompt_ids, vllm_generate
    from rlpost.policy.model import load_policy
    from rlpost.rl.learner import sequence_logprobs
    from rlpost.rl.weights import pack_weights
    from synthetic_policy import make_scenarios

    policy = load_policy(sft.checkpoint)
    text = "<v3><tl_red><|cot_start|> The light ahead is red, so I will stop.<|cot_end|><|traj_start|><A1><K2>"
    assert engine.llm.get_tokenizer().encode(text, add_special_tokens=False) == policy.tokenizer.encode(text)
    prompts = [prompt_ids(policy, s) for s in make_scenarios(6, "val", seed=3)]
    hf = hf_generate(policy, prompts, greedy=True)
    assert vllm_generate(engine.llm, policy, prompts, greedy=True) == hf

    named = dict(policy.backbone.named_parameters())
    emb_name = next(n for n, p in named.items() if p is policy.backbone.get_input_embeddings().weight)
    assert ("lm_head.weight" in named) == (arch == "llama")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        named[emb_name].add_(torch.randn(named[emb_name].shape, generator=gen) * named[emb_name].std())
    probe = prompts[0] + hf[0][0]
    before = engine.probe_logprobs(probe)
    engine.load_weights(pack_weights([(emb_name, named[emb_name])], version=1))
    after, want = engine.probe_logprobs(probe), sequence_logprobs(policy.backbone, probe)
    moved = max(abs(a - b) for a, b in zip(before, after))
    assert moved > 0.1
    assert max(abs(a - b) for a, b in zip(after, want)) < 1e-3  # the tied head followed the embedding
    hf_moved = hf_generate(policy, prompts, greedy=True)
    assert hf_moved != hf  # the update changed greedy decoding, so a stale engine would fail the next check
    # ... and decoding is not degenerate (a model repeating a few tokens would make parity prove little)
    assert len({t for (c,) in hf_moved for t in c}) > 8
    assert vllm_generate(engine.llm, policy, prompts, greedy=True) == hf_moved


def test_two_grpo_steps_on_ray(arch, sft, redis_url, ray_session, tmp_path):
    """2 GRPO steps from the SFT checkpoint with the real actors: every engine acknowledges the learner's version
    and matches its log-probs on the probe; the update really moved the policy (so the probe could have failed);
    the held-out evaluation runs before and after; the final policy folder loads as the same architecture."""
    import pyarrow.parquet as pq
    from transformers import AutoConfig

    from rlpost.loop.train import train
    from rlpost.policy.model import load_policy
    from rlpost.rl.config import RunConfig
    from rlpost.rl.learner import sequence_logprobs
    from synthetic_policy import make_scenarios

    out = tmp_path / "grpo"
    cfg = RunConfig(
        name=f"byo-{arch}", out=str(out), redis_url=redis_url,
        rewards={"components": [{"name": n, "in_process": True, "deadline_s": None}
                                for n in ("trajectory_quality", "coc_consistency")]},
        rollout={"group_size": 4, "num_cpus": 0.5},
        learner={"num_ranks": 2, "zero_stage": 2, "num_cpus": 0.5, "micro_batch": 4, "lr": 2e-3},
        trainer={"steps": 2, "scenarios_per_step": 2, "checkpoint_every": 2, "eval_scenarios": 2, "eval_samples": 2},
    )
    summary = train(cfg, str(sft.checkpoint), make_scenarios(8), make_scenarios(2, "val", seed=1), log=print)
    assert set(summary) >= {"before", "after"}
    steps = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert set(steps) == {-1, 0, 1, 2}
    for s in (0, 1):
        assert steps[s]["version"] == s + 1
        assert steps[s]["sync_probe_gap"] < 1e-3
    assert pq.read_table(out / "rollouts").num_rows == 2 * 2 * 4

    final = out / "policy"
    assert AutoConfig.from_pretrained(str(final)).architectures == AutoConfig.from_pretrained(
        str(sft.checkpoint)).architectures
    row = pq.read_table(out / "rollouts").to_pylist()[0]
    seq = list(row["prompt_ids"]) + list(row["completion_ids"])
    old = sequence_logprobs(load_policy(sft.checkpoint).backbone, seq)
    new = sequence_logprobs(load_policy(final).backbone, seq)
    # The learner moved the log-probs by more than the probe's tolerance: a stale engine would have failed it.
    assert sum(abs(a - b) for a, b in zip(old, new)) / len(old) > 1e-3


def test_an_architecture_vllm_cannot_serve_is_refused_naming_model_path(tmp_path):
    pytest.importorskip("vllm")
    from rlpost.common.errors import UserError
    from rlpost.policy.vllm_engine import make_llm

    config = {"architectures": ["NoSuchForCausalLM"], "model_type": "no_such", "max_position_embeddings": 512}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="model.path: .* is a NoSuchForCausalLM, which vLLM .* does not serve"):
        make_llm(tmp_path)
