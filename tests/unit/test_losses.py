"""Golden values and split invariance of the registered policy losses, their normalisers and layout checks."""

import math

import pytest
import torch

from rlpost.rl.losses import LOSSES, Layout, aggregate, kl_estimate
from rlpost.rl.losses.ar1_softmax import AR1Softmax
from rlpost.rl.losses.common import aggregate_normalizer
from rlpost.rl.losses.ppo_clip import PPOClip, ppo_clip_loss


def test_kl_estimators_golden():
    logp = torch.zeros(1, 1)
    ref = torch.full((1, 1), math.log(0.5))
    assert kl_estimate("k1", logp, ref).item() == pytest.approx(math.log(2))
    assert kl_estimate("k2", logp, ref).item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_estimate("k3", logp, ref).item() == pytest.approx(0.5 + math.log(0.5) * -1 - 1)
    assert kl_estimate("k3", ref, ref).item() == 0.0
    with pytest.raises(ValueError, match="kind"):
        kl_estimate("k4", logp, ref)
    with pytest.raises(ValueError, match="ref_logp"):
        kl_estimate("k1", logp, torch.zeros(2, 1))


def test_k3_is_unbiased_for_kl():
    # Sample from p, estimate KL(p||q) with k3; compare to the exact value.
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.4, 0.4, 0.2])
    idx = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    est = kl_estimate("k3", p.log()[idx][None], q.log()[idx][None]).mean()
    exact = (p * (p / q).log()).sum()
    assert est.item() == pytest.approx(exact.item(), rel=0.02)


def test_ppo_clip_golden_positive_and_negative_advantages():
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    loss, metrics = PPOClip()(logp, old, torch.tensor([1.0]), mask, group_size=1)
    # A=+1: token 1 max(-1.5, -1.28) = -1.28; token 2 max(-0.5, -0.8) = -0.5; mean -0.89.
    assert loss.item() == pytest.approx(-0.89)
    assert metrics["clip_frac"] == pytest.approx(0.5)
    loss, _ = PPOClip()(logp, old, torch.tensor([-1.0]), mask, group_size=1)
    # A=-1: token 1 max(1.5, 1.28) = 1.5; token 2 max(0.5, 0.8) = 0.8; mean 1.15.
    assert loss.item() == pytest.approx(1.15)


def test_ppo_dual_clip_caps_negative_advantage_loss():
    logp = torch.log(torch.tensor([[20.0]]))
    args = (torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1))
    assert PPOClip()(logp, *args, group_size=1)[0].item() == pytest.approx(10.0)
    assert PPOClip(dual_clip=None)(logp, *args, group_size=1)[0].item() == pytest.approx(20.0)
    # Positive advantages are never dual-clipped: the ratio is capped at 1 + eps_high.
    positive = PPOClip()(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1), group_size=1)[0]
    assert positive.item() == pytest.approx(-1.28)
    with pytest.raises(ValueError, match="dual_clip"):
        ppo_clip_loss(logp, *args, dual_clip=0.5)


def test_ppo_gradient_is_policy_gradient_on_policy():
    # At ratio 1 (on-policy) the gradient of the token-mean loss is −A·∇logp / n_tokens.
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, _ = PPOClip()(logp, logp.detach(), torch.tensor([2.0, -1.0]), mask, group_size=2)
    loss.backward()
    expected = torch.tensor([[-2.0, -2.0, 0.0], [1.0, 1.0, 1.0]]) / 5
    torch.testing.assert_close(logp.grad, expected)


@pytest.mark.parametrize("loss_cfg", [PPOClip(kl_coef=0.1), AR1Softmax(kl_coef=0.1)])
def test_kl_in_loss_adds_the_estimator(loss_cfg):
    logp = torch.zeros(2, 2)
    ref = torch.full((2, 2), math.log(0.5))
    k3 = 0.5 + math.log(2) - 1
    base, _ = loss_cfg(logp, logp, torch.zeros(2), torch.ones(2, 2), group_size=2)
    with_kl, metrics = loss_cfg(logp, logp, torch.zeros(2), torch.ones(2, 2), group_size=2, ref_logp=ref)
    # ppo_clip token mean: + 0.1·k3; ar1_softmax: one group, weights ½ each, 2 tokens each: + ½·2·2·0.1·k3.
    assert with_kl.item() - base.item() == pytest.approx(0.1 * k3 * (1 if loss_cfg.name == "ppo_clip" else 2))
    assert metrics["kl_ref"] == pytest.approx(k3)
    assert loss_cfg.needs_reference and not type(loss_cfg)().needs_reference


def test_aggregation_modes_golden():
    token_loss = torch.tensor([[1.0, 2.0, 9.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert aggregate(token_loss, mask, "token_mean").item() == pytest.approx(7.0 / 3)
    assert aggregate(token_loss, mask, "seq_mean_token_mean").item() == pytest.approx((1.5 + 4.0) / 2)
    # B = 2 sequences × max completion length 4: normalizer 8.
    assert aggregate(token_loss, mask, "seq_mean_token_sum_norm", normalizer=8).item() == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="normalizer"):
        aggregate(token_loss, mask, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="agg"):
        aggregate(token_loss, mask, "bogus")


def test_normalizers_golden():
    step = dict(completion_lengths=[3, 5, 2, 6], group_size=2, completion_budget=10)
    assert PPOClip(agg="token_mean").normalizer(**step) == 16.0
    assert PPOClip(agg="seq_mean_token_mean").normalizer(**step) == 4.0
    assert PPOClip(agg="seq_mean_token_sum_norm").normalizer(**step) == 40.0
    assert AR1Softmax().normalizer(**step) == 2.0
    with pytest.raises(ValueError, match="agg"):
        aggregate_normalizer("bogus", [1], 1)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_loss_and_gradient_invariant_to_rank_and_accumulation_split(agg):
    gen = torch.Generator().manual_seed(0)
    batch, steps = 8, 6
    logp = (-torch.rand(batch, steps, generator=gen)).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(batch, steps, generator=gen)
    adv = torch.randn(batch, generator=gen)
    mask = (torch.rand(batch, steps, generator=gen) > 0.3).float()
    mask[:, 0] = 1.0
    loss_cfg = PPOClip(agg=agg)
    # The full-batch loss by hand: token mean, mean of sequence means, or Dr.GRPO's sum / (B · budget).
    token_loss = ppo_clip_loss(logp, old, adv, mask, agg="token_mean")[0] * mask.sum()  # the masked sum
    per_seq = torch.stack([ppo_clip_loss(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], mask[i:i + 1])[0]
                           for i in range(batch)])
    full = {"token_mean": token_loss / mask.sum(), "seq_mean_token_mean": per_seq.mean(),
            "seq_mean_token_sum_norm": token_loss / (batch * steps)}[agg]
    (full_grad,) = torch.autograd.grad(full, logp)

    global_count = loss_cfg.normalizer(completion_lengths=mask.sum(1).int().tolist(), group_size=2,
                                       completion_budget=steps)
    # 2 ranks × 2 accumulation steps of 2 sequences; all-reduce-sum of accumulated micro-batch losses.
    total = 0.0
    grad = torch.zeros_like(logp)
    for start in range(0, batch, 2):
        part = slice(start, start + 2)
        piece, _ = loss_cfg(logp[part], old[part], adv[part], mask[part], group_size=2, normalizer=global_count)
        total = total + piece.item()
        grad += torch.autograd.grad(piece, logp)[0]
    assert total == pytest.approx(full.item(), rel=1e-6)
    torch.testing.assert_close(grad, full_grad)


def test_ar1_softmax_golden():
    logp = torch.tensor([[-1.0, -1.0], [-0.5, -7.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, metrics = AR1Softmax(beta=1.0)(logp, logp, torch.tensor([1.0, -1.0]), mask, group_size=2)
    w = torch.softmax(torch.tensor([1.0, -1.0]), 0)
    assert loss.item() == pytest.approx(-(w[0] * -2.0 + w[1] * -0.5).item())
    assert metrics["weight_entropy"] > 0


def test_ar1_softmax_weights_are_constants_and_split_invariant():
    gen = torch.Generator().manual_seed(1)
    logp = (-torch.rand(8, 4, generator=gen)).requires_grad_()
    adv = torch.randn(8, generator=gen)
    mask = torch.ones(8, 4)
    loss_cfg = AR1Softmax(beta=2.0)
    full, _ = loss_cfg(logp, logp.detach(), adv, mask, group_size=4)
    (g,) = torch.autograd.grad(full, logp)
    w = torch.softmax(2.0 * adv.view(2, 4), 1).view(8, 1).expand(8, 4)
    torch.testing.assert_close(g, -w / 2)  # 2 groups
    groups = loss_cfg.normalizer(completion_lengths=[4] * 8, group_size=4, completion_budget=4)
    halves = sum(loss_cfg(logp[s], logp[s].detach(), adv[s], mask[s], group_size=4, normalizer=groups)[0].item()
                 for s in (slice(0, 4), slice(4, 8)))
    assert halves == pytest.approx(full.item())
    with pytest.raises(ValueError, match="group_size"):
        loss_cfg(logp, logp, adv, mask, group_size=3)


@pytest.mark.parametrize("layout, field", [
    (Layout(group_size=12, num_ranks=1, per_rank=96, micro_batch=16), "learner.micro_batch"),
    (Layout(group_size=8, num_ranks=2, per_rank=4, micro_batch=16), "learner.num_ranks"),
])
def test_ar1_softmax_refuses_layouts_that_split_groups(layout, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")) as err:
        AR1Softmax().check_layout(layout)
    assert "rollout.group_size" in str(err.value)
    AR1Softmax().check_layout(Layout(group_size=12, num_ranks=1, per_rank=96, micro_batch=24))
    AR1Softmax().check_layout(Layout(group_size=12, num_ranks=1, per_rank=12, micro_batch=16))  # micro = 12
    PPOClip().check_layout(layout)  # token-level: any split works


def test_registry_shapes_and_registration_errors():
    assert {"ppo_clip", "ar1_softmax"} <= set(LOSSES.entries)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown policy loss"):
        LOSSES.resolve("nope")
    with pytest.raises(ValueError, match="advantages"):
        PPOClip()(x, x, torch.zeros(3), x, group_size=1)
    with pytest.raises(ValueError, match="logp/old_logp/mask"):
        PPOClip()(x, torch.zeros(2, 4), torch.zeros(2), x, group_size=1)
    with pytest.raises(ValueError, match="already registered"):
        from typing import Literal

        from pydantic import Field

        class Clash(PPOClip):
            name: Literal["ppo_clip"] = Field("ppo_clip", description="a second ppo_clip")

        LOSSES.register(Clash)
