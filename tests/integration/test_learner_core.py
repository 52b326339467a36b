"""The learner core on one process: real DeepSpeed (gloo) on a real tiny policy checkpoint."""


import pytest
import torch

pytestmark = pytest.mark.integration


def _batch(learner_module, n=8, prompt_len=5, comp_len=7, seed=0):
    from rlpost.learner import make_train_batch, token_logprobs

    g = torch.Generator().manual_seed(seed)
    vocab = learner_module.config.vocab_size
    prompts = [torch.randint(4, vocab, (prompt_len,), generator=g).tolist() for _ in range(n)]
    comps = [torch.randint(4, vocab, (comp_len - i % 3,), generator=g).tolist() for i in range(n)]
    with torch.no_grad():
        full = make_train_batch(prompts, comps, [[0.0] * len(c) for c in comps], [0.0] * n, pad_id=0)
        logp = token_logprobs(learner_module, full.input_ids, full.attention_mask)
    sampler = [logp[i, len(p): len(p) + len(c)].tolist() for i, (p, c) in enumerate(zip(prompts, comps))]
    adv = torch.randn(n, generator=g).tolist()
    return make_train_batch(prompts, comps, sampler, adv, pad_id=0)


def test_update_changes_weights_and_reports_zero_sampler_gap(tiny_checkpoint, single_rank_env):
    from rlpost.learner import GRPOLearner
    from rlpost.run_config import LearnerConfig
    from rlpost.weights import verify_weights

    learner = GRPOLearner(tiny_checkpoint, LearnerConfig(lr=1e-3, micro_batch=4), per_rank_batch=8, group_size=4)
    before = learner.export_weights(bucket_mb=0.05)
    verify_weights(before)
    assert len(before.buckets) > 1  # small buckets: several transfers, never one per parameter list
    batch = _batch(learner.engine.module)
    metrics = learner.update(batch, normalizer=float(batch.completion_mask.sum()))
    assert metrics["sampler_logp_gap"] < 1e-5  # old_logp came from the same weights
    assert torch.isfinite(torch.tensor(metrics["loss"]))
    after = learner.export_weights(bucket_mb=64)
    assert after.version == 1 and before.version == 0
    assert after.checksum != before.checksum
    changed = [n for (n, a), (_, b) in zip(before.named_tensors(), after.named_tensors()) if not torch.equal(a, b)]
    assert any("lm_head" in n for n in changed) and any("layers.0" in n for n in changed)  # head and backbone
    probe = learner.probe_logprobs(batch.input_ids[0, :10].tolist())
    assert len(probe) == 9 and all(p <= 0 for p in probe)


def test_corrupted_learner_checkpoint_is_a_clear_error(tiny_checkpoint, single_rank_env, tmp_path):
    from rlpost.learner import GRPOLearner
    from rlpost.run_config import LearnerConfig

    learner = GRPOLearner(tiny_checkpoint, LearnerConfig(micro_batch=4), per_rank_batch=4, group_size=4)
    learner.save(tmp_path, {"next_step": 1})
    assert learner.load(tmp_path)["next_step"] == 1
    for f in (tmp_path / (tmp_path / "latest").read_text().strip()).glob("*.pt"):
        f.write_bytes(f.read_bytes()[:100])  # truncated on disk
    with pytest.raises(ValueError, match="learner checkpoint .* unreadable"):
        learner.load(tmp_path)
