"""The learner core on one process: real DeepSpeed (gloo) on a real tiny policy checkpoint."""


import pytest
import torch

pytestmark = pytest.mark.integration


def _batch(learner_module, n=8, prompt_len=5, comp_len=7, seed=0):
    from rlpost.rl.learner import make_train_batch, token_logprobs

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
    from rlpost.rl.config import LearnerConfig
    from rlpost.rl.learner import GRPOLearner
    from rlpost.rl.weights import verify_weights

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
    from rlpost.rl.config import LearnerConfig
    from rlpost.rl.learner import GRPOLearner

    learner = GRPOLearner(tiny_checkpoint, LearnerConfig(micro_batch=4), per_rank_batch=4, group_size=4)
    learner.save(tmp_path, {"next_step": 1})
    assert learner.load(tmp_path)["next_step"] == 1
    for f in (tmp_path / (tmp_path / "latest").read_text().strip()).glob("*.pt"):
        f.write_bytes(f.read_bytes()[:100])  # truncated on disk
    with pytest.raises(ValueError, match="learner checkpoint .* unreadable"):
        learner.load(tmp_path)


def test_flow_expert_trains_on_on_policy_prefixes_and_leaves_the_backbone_update_alone(
        tiny_checkpoint_with_expert, single_rank_env, tmp_path):
    import numpy as np

    from rlpost.policy.expert import FlowActionExpert
    from rlpost.policy.model import load_policy
    from rlpost.rl.config import LearnerConfig
    from rlpost.rl.learner import GRPOLearner

    ckpt = tiny_checkpoint_with_expert
    sft_expert = FlowActionExpert.load(ckpt)
    learners = {mode: GRPOLearner(ckpt, LearnerConfig(lr=1e-3, micro_batch=4, expert=mode), per_rank_batch=8,
                                  group_size=4) for mode in ("frozen", "flow")}
    for mode, learner in learners.items():
        batch = _batch(learner.engine.module)
        if mode == "flow":
            lengths = [5 + 3 if i % 4 else 0 for i in range(len(batch))]  # every 4th sample has no trajectory
            targets = [np.random.default_rng(i).normal(size=(64, 2)) for i in range(len(batch))]
            from rlpost.rl.learner import make_train_batch

            with pytest.raises(ValueError, match="needs prefix_mask"):
                learner.update(batch, normalizer=float(batch.completion_mask.sum()))
            ids = batch.input_ids.tolist()
            lens = batch.attention_mask.sum(1).tolist()
            batch = make_train_batch([r[:5] for r in ids], [r[5:n] for r, n in zip(ids, lens)],
                                     [batch.old_logp[i, 5:n].tolist() for i, n in enumerate(lens)],
                                     batch.advantages.tolist(), 0, prefix_lengths=lengths, expert_targets=targets)
        metrics = learner.update(batch, normalizer=float(batch.completion_mask.sum()))
        assert ("expert/flow_loss" in metrics) == (mode == "flow")
    frozen, flow = (dict(learners[m].engine.module.named_parameters()) for m in ("frozen", "flow"))
    for name in frozen:  # the flow loss sits behind the stop-gradient: the backbone steps identically
        torch.testing.assert_close(frozen[name], flow[name], rtol=0, atol=1e-6, msg=name)
    trained = learners["flow"].expert.state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in sft_expert.state_dict().items())
    assert metrics["expert/flow_loss"] > 0
    # Checkpoint round trip carries the expert and its optimizer; the exported policy is complete.
    learners["flow"].save(tmp_path / "ckpt", {"next_step": 1})
    saved = {k: v.clone() for k, v in trained.items()}
    learners["flow"].expert.load_state_dict(sft_expert.state_dict())
    restored = learners["flow"].load(tmp_path / "ckpt")
    assert restored["next_step"] == 1 and restored["version"] == 1 and "expert" not in restored
    for k, v in learners["flow"].expert.state_dict().items():
        assert torch.equal(v, saved[k]), k
    for mode, learner in learners.items():
        learner.save_pretrained(tmp_path / mode)
        policy = load_policy(tmp_path / mode)
        want = saved if mode == "flow" else sft_expert.state_dict()
        assert all(torch.equal(policy.expert.state_dict()[k], want[k]) for k in want)
        assert policy.tokenizer.vocab_size == load_policy(ckpt).tokenizer.vocab_size
    with pytest.raises(ValueError, match="written with learner.expert=frozen"):
        learners["frozen"].save(tmp_path / "frozen_ckpt", {"next_step": 1})
        learners["flow"].load(tmp_path / "frozen_ckpt")


@pytest.mark.parametrize("zero_stage", [1, 3])
def test_activation_checkpointing_gives_the_same_update(tiny_checkpoint, single_rank_env, zero_stage):
    """Recomputing activations in the backward changes memory and time, not the math: same loss, same weights."""
    from rlpost.rl.config import LearnerConfig
    from rlpost.rl.learner import GRPOLearner

    results = []
    for checkpointing in (False, True):
        cfg = LearnerConfig(lr=1e-3, micro_batch=4, zero_stage=zero_stage, activation_checkpointing=checkpointing)
        learner = GRPOLearner(tiny_checkpoint, cfg, per_rank_batch=8, group_size=4)
        assert learner.engine.module.is_gradient_checkpointing == checkpointing
        batch = _batch(learner.engine.module)
        metrics = learner.update(batch, normalizer=float(batch.completion_mask.sum()))
        results.append((metrics, dict(learner.export_weights(bucket_mb=64).named_tensors())))
    (plain, plain_w), (ckpt, ckpt_w) = results
    assert ckpt["loss"] == pytest.approx(plain["loss"], abs=1e-6)
    assert ckpt["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-5)
    assert max(float((plain_w[n] - ckpt_w[n]).abs().max()) for n in plain_w) < 1e-6


def test_bf16_autocast_trains_fp32_weights_close_to_the_fp32_update(tiny_checkpoint, single_rank_env):
    """bf16 autocast: the forward is rounded (the sampler gap shows it), the weights and the sync stay fp32."""
    from rlpost.rl.config import LearnerConfig
    from rlpost.rl.learner import GRPOLearner

    results = {}
    for precision in ("fp32", "bf16"):
        learner = GRPOLearner(tiny_checkpoint, LearnerConfig(lr=1e-3, micro_batch=4, precision=precision),
                              per_rank_batch=8, group_size=4)
        batch = _batch(learner.engine.module)
        metrics = learner.update(batch, normalizer=float(batch.completion_mask.sum()))
        weights = learner.export_weights(bucket_mb=64)
        assert all(t.dtype == torch.float32 for _, t in weights.named_tensors())
        results[precision] = metrics
    fp32, bf16 = results["fp32"], results["bf16"]
    assert fp32["sampler_logp_gap"] < 1e-5 < bf16["sampler_logp_gap"] < 0.1
    assert bf16["loss"] == pytest.approx(fp32["loss"], abs=0.05 * abs(fp32["loss"]) + 1e-3)
    assert bf16["grad_norm"] == pytest.approx(fp32["grad_norm"], rel=0.1)
