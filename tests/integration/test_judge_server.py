"""The judge behind a real OpenAI-compatible vLLM server (``python -m vllm.entrypoints.openai.api_server``, started
here on 127.0.0.1 and stopped at the end; one server for the module):

1. grade format, completions (token-id prompts) and chat (text prompt that encodes to the same ids): the server's
   grades equal the in-process grades (transformers' argmax over the grade tokens = vLLM's constrained greedy
   grade, tests/integration/test_judge_vllm.py) on every pair;
2. reasoning format: the judge (trained on it too) writes the rubric's rationale then ``Grade: N``; both APIs give
   the same answers, and they parse;
3. 2 GRPO steps whose ``reasoning_critic`` is the served judge, the rubric logged beside it with weight 0;
4. a stalled server (SIGSTOP): per-request timeouts are status timeout per sample, and the guard's deadline stops a
   component whose requests would wait longer.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    """A tiny judge trained ~1 min on both answer formats (enough for the reasoning format's shape)."""
    pytest.importorskip("vllm")
    from rlpost.judge.sft import JudgeConfig, run_judge_sft
    from rlpost.rewards.synthetic import synthetic_scenarios

    out = tmp_path_factory.mktemp("judge_served")
    cfg = JudgeConfig(out=str(out), size="tiny", steps=700, max_minutes=1.0, batch_size=16, lr=3e-3,
                      warmup_steps=20, pairs_per_reference=40, val_pairs_per_reference=4, eval_every=0,
                      eval_vllm=False, reasoning_share=0.5)
    result = run_judge_sft(cfg, train=synthetic_scenarios(40, seed=11), val=synthetic_scenarios(10, seed=12),
                           log=lambda *a: None)
    return result.checkpoint


@pytest.fixture(scope="module")
def server(judge, tmp_path_factory):
    from rlpost.judge.serve import serve_judge

    with serve_judge(judge, log=tmp_path_factory.mktemp("vllm_log") / "server.log") as served:
        yield served
    assert served.process.poll() is not None  # stopped


@pytest.fixture(scope="module")
def pairs():
    import random

    from rlpost.judge.data import perturb, references_from
    from rlpost.rewards.critic_backends import CritiqueRequest
    from rlpost.rewards.synthetic import synthetic_scenarios

    refs = references_from(synthetic_scenarios(16, seed=13))
    rng = random.Random(0)
    kinds = ["copy", "paraphrase", "wrong_longitudinal", "flip_direction", "drop_factors", "garbage"]
    return [CritiqueRequest(r.scenario_id, perturb(r, rng, refs, kinds[(i + k) % len(kinds)])[0], r.trace)
            for i, r in enumerate(refs) for k in range(2)]


def _in_process_grades(checkpoint, reqs):
    import torch
    from transformers import AutoModelForCausalLM

    from rlpost.judge.model import JudgePromptEncoder, JudgeSpec, predict_grades
    from rlpost.policy.tokenizer import PAD, PolicyTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
    tok = PolicyTokenizer.load(checkpoint)
    enc = JudgePromptEncoder(tok, JudgeSpec.load(checkpoint))
    return predict_grades(model, enc, [(r.reference, r.trace) for r in reqs], tok.id(PAD))


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_grade_format_through_the_server_equals_in_process(judge, server, pairs, api):
    from rlpost.judge.critic import JudgeCritic

    critic = JudgeCritic(endpoint=server.base, model=str(judge), model_name="judge", api=api, timeout_s=120)
    grades = critic.grade(pairs)
    assert all(g.status == "ok" for g in grades), [(g.status, g.rationale) for g in grades if g.status != "ok"]
    assert [g.grade for g in grades] == _in_process_grades(judge, pairs)
    assert len({g.grade for g in grades}) > 1  # a real model, not one constant answer


def test_reasoning_format_through_the_server_both_apis(judge, server, pairs):
    from rlpost.judge.critic import JudgeCritic

    by_api = {}
    for api in ("completions", "chat"):
        critic = JudgeCritic(endpoint=server.base, model=str(judge), model_name="judge", api=api, answer="reasoning",
                             timeout_s=120)
        by_api[api] = critic.grade(pairs)
    comp, chat = by_api["completions"], by_api["chat"]
    # The chat text encodes to the completions' token ids, so greedy answers are identical.
    assert [g.details["judge_output"] for g in comp] == [g.details["judge_output"] for g in chat]
    ok = [g for g in comp if g.status == "ok"]
    assert len(ok) >= 0.9 * len(pairs), [g.details["judge_output"] for g in comp if g.status != "ok"][:3]
    # the answer is the rubric's kind of rationale, then the grade: rationale kept, grade read from "Grade: N"
    assert all(g.details["judge_rationale"].startswith(("behaviour", "generated trace")) for g in ok)
    assert all(f"Grade: {g.grade}" in g.details["judge_output"] for g in ok)


def test_two_grpo_steps_with_the_served_judge_as_reasoning_critic(tmp_path, judge, server, tiny_checkpoint,
                                                                     redis_url):
    import pyarrow.parquet as pq
    import ray

    from rlpost.actors.common import actor_env
    from rlpost.judge.critic import ADDRESS_ENV
    from rlpost.loop.train import train
    from rlpost.rl.config import RunConfig
    from synthetic_policy import make_scenarios

    critic = {"backend": "judge", "endpoint": server.base, "model": str(judge), "model_name": "judge",
              "answer": "reasoning", "api": "chat", "timeout_s": 60}
    rewards = {"components": [
        {"name": "trajectory_quality", "in_process": True, "deadline_s": None},
        {"name": "reasoning_critic", "deadline_s": 120, "weight": 0.2, "params": critic},  # a guarded worker
        {"name": "reasoning_critic", "label": "rubric_critic", "in_process": True, "deadline_s": None, "weight": 0.0,
         "params": {"backend": "rubric"}},
    ]}
    out = tmp_path / "run"
    cfg = RunConfig(name=f"judge-served-{os.getpid()}", out=str(out), redis_url=redis_url, rewards=rewards,
                    rollout={"group_size": 2, "num_cpus": 0.5},
                    learner={"num_ranks": 1, "zero_stage": 2, "num_cpus": 0.5, "micro_batch": 4},
                    trainer={"steps": 2, "scenarios_per_step": 2, "checkpoint_every": 2, "eval_scenarios": 2,
                             "eval_samples": 1})
    address_env = os.environ.get(ADDRESS_ENV)
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=actor_env())
    try:
        train(cfg, tiny_checkpoint, make_scenarios(8, "train"), make_scenarios(2, "val", seed=1), log=print)
    finally:
        ray.shutdown()
    # the endpoint grades: no in-cluster JudgeServer was started for it (which would also leave this process
    # pointing later clusters at this one through RLPOST_RAY_ADDRESS)
    assert os.environ.get(ADDRESS_ENV) == address_env
    steps = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert {0, 1} <= set(steps)
    table = pq.read_table(out / "rollouts").to_pylist()
    assert len(table) == 2 * 2 * 2
    statuses = [r["reward.reasoning_critic.status"] for r in table]
    assert set(statuses) <= {"ok", "unparseable"} and statuses.count("ok") >= len(table) // 2, statuses
    assert all(r["reward.rubric_critic.status"] in ("ok", "unparseable") for r in table)
    # the report shows judge-vs-rubric agreement on these rollouts (the critics the pipeline finds in the config)
    from rlpost.apps.pipeline import critic_pair
    from rlpost.apps.report import write_report

    assert critic_pair(cfg) == ("reasoning_critic", "rubric_critic")
    report = write_report(out, {}, critics=critic_pair(cfg)).read_text()
    assert "judge vs rubric on the run's rollouts" in report and "training rollouts: exact agreement" in report


def test_stalled_server_gives_timeouts_not_grades(judge, server, pairs):
    from rlpost.rewards.compose import RewardPipeline
    from rlpost.rewards.spec import RewardSpec
    from rlpost.rewards.synthetic import synthetic_scenarios
    from rlpost.rewards.types import Completion

    scen = synthetic_scenarios(3, seed=21)
    comps = [Completion(s.scenario_id, 0, s.coc_trace, None) for s in scen]
    params = {"backend": "judge", "endpoint": server.base, "model": str(judge), "api": "chat", "answer": "reasoning"}
    per_request = RewardSpec(name="reasoning_critic", weight=1.0, in_process=True, deadline_s=None,
                             params=params | {"timeout_s": 2.0})
    deadline = RewardSpec(name="reasoning_critic", label="critic_deadline", weight=1.0, deadline_s=4.0,
                          params=params | {"timeout_s": 60.0})
    os.kill(server.process.pid, signal.SIGSTOP)  # the API process stops answering; its socket still accepts
    try:
        with RewardPipeline([per_request, deadline]) as pipe:
            scored = pipe.score(comps, scen)
            metrics = pipe.metrics()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    per = [s.components["reasoning_critic"] for s in scored]
    assert [r.status for r in per] == ["timeout"] * 3 and "no answer within timeout_s=2.0" in per[0].info["error"]
    assert [s.components["critic_deadline"].status for s in scored] == ["timeout"] * 3
    assert metrics["rewards/reasoning_critic/timeout"] == 3 and metrics["rewards/critic_deadline/timeout"] == 3
    # and the server answers again once continued
    from rlpost.judge.critic import JudgeCritic

    g, = JudgeCritic(endpoint=server.base, model=str(judge), timeout_s=60).grade(pairs[:1])
    assert g.status == "ok"
