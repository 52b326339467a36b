"""The judge backend for real on CPU: a judge trained here, served by vLLM, grading through the reward pipeline.

1. ``engine: local``: ``reasoning_critic`` with ``backend: judge`` in a guarded worker process (the production path
   without Ray): the worker starts vLLM on the project's own judge, grades a batch, and the second identical call
   is served entirely from the Redis cache.
2. ``engine: actor``: the same through the named ``JudgeServer`` Ray actor, looked up by name from the guarded
   worker of the run's ``RewardWorker`` actor (another job): the grades of the same model.
Both check that vLLM's constrained greedy grade equals transformers' argmax over the 6 grade tokens.
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    """A tiny judge trained for a few hundred steps on synthetic references (seconds; agreement not the point)."""
    pytest.importorskip("vllm")
    from rlpost.judge.sft import JudgeConfig, run_judge_sft
    from rlpost.rewards.synthetic import synthetic_scenarios

    out = tmp_path_factory.mktemp("judge")
    cfg = JudgeConfig(out=str(out), size="tiny", steps=250, max_minutes=0.5, batch_size=16, lr=3e-3, warmup_steps=20,
                      pairs_per_reference=40, val_pairs_per_reference=4, eval_every=0, eval_vllm=False)
    result = run_judge_sft(cfg, train=synthetic_scenarios(40, seed=11), val=synthetic_scenarios(10, seed=12),
                           log=lambda *a: None)
    assert (result.checkpoint / "judge.json").is_file() and (result.checkpoint / "model.safetensors").is_file()
    assert result.agreement["n"] == 40 and result.agreement["unparseable"] == 0
    return result


def test_judge_sft_lowers_the_grade_loss_and_records_the_final_agreement(judge):
    """The shared supervised loop trains the judge (plain torch engine, time-bounded cosine)."""
    train = [r for r in judge.history if "train_ce_grade" in r]
    assert len(train) >= 2 and train[-1]["train_ce_grade"] < train[0]["train_ce_grade"]
    assert judge.history[-1]["final_exact"] == judge.agreement["exact"]
    assert judge.agreement["steps"] == judge.steps


@pytest.fixture(scope="module")
def batch():
    """Completions whose traces are perturbed references (varied grades), aligned with their scenarios."""
    import random

    from rlpost.judge.data import perturb, references_from
    from rlpost.rewards.synthetic import synthetic_scenarios
    from rlpost.rewards.types import Completion

    scen = synthetic_scenarios(12, seed=13)
    refs = references_from(scen)
    rng = random.Random(0)
    kinds = ["copy", "paraphrase", "wrong_longitudinal", "flip_direction", "drop_factors", "garbage"]
    comps = [Completion(s.scenario_id, k, perturb(r, rng, refs, kinds[(i + k) % len(kinds)])[0], None)
             for i, (s, r) in enumerate(zip(scen, refs)) for k in range(2)]
    return comps, [s for s in scen for _ in range(2)]


def _hf_grades(checkpoint, comps, scenarios):
    import torch
    from transformers import AutoModelForCausalLM

    from rlpost.judge.model import JudgePromptEncoder, JudgeSpec, predict_grades
    from rlpost.policy.tokenizer import PAD, PolicyTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
    tok = PolicyTokenizer.load(checkpoint)
    enc = JudgePromptEncoder(tok, JudgeSpec.load(checkpoint))
    return predict_grades(model, enc, [(s.coc_trace, c.trace) for c, s in zip(comps, scenarios)], tok.id(PAD))


def _spec(params):
    from rlpost.rewards.spec import RewardSpec

    # The first call starts vLLM inside the worker (imports + engine start: ~10-20 s on a busy 2-core machine).
    return RewardSpec(name="reasoning_critic", weight=1.0, cache=True, deadline_s=150.0,
                      params={"backend": "judge", **params})


def test_judge_backend_local_vllm_and_redis_cache(judge, batch, redis_url):
    from rlpost.rewards.cache import RewardCache
    from rlpost.rewards.compose import RewardPipeline

    comps, scenarios = batch
    cache = RewardCache(redis_url, prefix=f"rlpost:test-judge:{os.getpid()}")
    with RewardPipeline([_spec({"model": str(judge.checkpoint), "engine": "local"})], cache=cache) as pipe:
        first = pipe.score(comps, scenarios)
        m1 = pipe.metrics()
        second = pipe.score(comps, scenarios)
        m2 = pipe.metrics()
    recs1 = [s.components["reasoning_critic"] for s in first]
    recs2 = [s.components["reasoning_critic"] for s in second]
    assert all(r.status == "ok" and not r.cached for r in recs1), [(r.status, r.info.get("error")) for r in recs1]
    assert all(r.info["backend"] == "judge" and r.info["judge"] == "local" for r in recs1)
    grades = [r.info["grade"] for r in recs1]
    assert all(isinstance(g, int) and 0 <= g <= 5 for g in grades)
    assert [r.value for r in recs1] == [g / 5 for g in grades]
    # vLLM (constrained to the grade tokens, greedy) picks what transformers' argmax picks: the real model ran.
    assert grades == _hf_grades(judge.checkpoint, comps, scenarios)
    # Second call: every sample from Redis, identical values, and the judge was not called again.
    n = len(comps)
    assert m1["rewards/cache/misses"] == n and m1["rewards/cache/hits"] == 0
    assert m2["rewards/cache/hits"] == n and m2["rewards/cache/misses"] == n
    assert all(r.cached for r in recs2) and [r.value for r in recs2] == [r.value for r in recs1]
    assert [r.info["grade"] for r in recs2] == grades
    cache.client.delete(*cache.client.keys(f"{cache.prefix}:*"))
    cache.close()


def test_judge_server_actor_found_by_name_from_the_reward_actor(judge, batch):
    """The run's path: the RewardWorker actor's guarded worker process (not a Ray worker itself, another job once
    connected) finds the cluster through its ancestor raylet and the JudgeServer by name and namespace."""
    ray = pytest.importorskip("ray")
    from rlpost.actors.common import actor_env
    from rlpost.actors.judge_server import start_judge_server, stop_judge_server
    from rlpost.actors.reward import RewardWorker
    from rlpost.common.runtime import LOOPBACK_ENV
    from rlpost.judge.critic import ADDRESS_ENV
    from rlpost.rewards.spec import RewardsConfig

    comps, scenarios = batch
    for k, v in LOOPBACK_ENV.items():
        os.environ.setdefault(k, v)
    owns = not ray.is_initialized()
    if owns:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    old_address = os.environ.get(ADDRESS_ENV)
    name = f"rlpost-judge-test-{os.getpid()}"
    server = start_judge_server(str(judge.checkpoint), name=name, num_cpus=0.5)
    rewards = RewardsConfig(components=[_spec({"engine": "actor", "server": name})])  # no model: the actor only
    worker = RewardWorker.options(num_cpus=0, runtime_env=actor_env(1)).remote(rewards, None, "unused")
    try:
        recs = [s.components["reasoning_critic"] for s in ray.get(worker.score.remote(comps, scenarios), timeout=240)]
        assert all(r.status == "ok" and r.info["judge"] == "actor" for r in recs), \
            [(r.status, r.info.get("error")) for r in recs]
        assert [r.info["grade"] for r in recs] == _hf_grades(judge.checkpoint, comps, scenarios)
        info = ray.get(server.info.remote())
        assert info["pairs"] == len(comps) and info["own_format"]
    finally:
        ray.get(worker.close.remote())
        ray.kill(worker)
        stop_judge_server(server)
        if old_address is None:
            os.environ.pop(ADDRESS_ENV, None)
        if owns:
            ray.shutdown()
