import math

import pytest
import torch

from rlpost.rl import grpo


def test_group_advantages_golden():
    adv = grpo.group_advantages(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]]), eps=0.0)
    s = math.sqrt(1.25)
    torch.testing.assert_close(adv[0], torch.tensor([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]))
    torch.testing.assert_close(adv[1], torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    mean_only = grpo.group_advantages(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), std_normalize=False)
    torch.testing.assert_close(mean_only, torch.tensor([[-1.5, -0.5, 0.5, 1.5]]))


def test_zero_variance_groups_get_zero_advantage_and_are_counted():
    rewards = torch.tensor([[0.5, 0.5, 0.5], [0.0, 1.0, 0.0]])
    assert grpo.group_advantages(rewards)[0].abs().max() == 0
    assert grpo.zero_variance_groups(rewards).tolist() == [True, False]


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.tensor([[0.0, float("nan")]])])
def test_group_advantages_rejects_bad_rewards(bad):
    with pytest.raises(ValueError, match="rewards"):
        grpo.group_advantages(bad)


def test_kl_estimators_golden():
    logp = torch.zeros(1, 1)
    ref = torch.full((1, 1), math.log(0.5))
    assert grpo.kl_estimate("k1", logp, ref).item() == pytest.approx(math.log(2))
    assert grpo.kl_estimate("k2", logp, ref).item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert grpo.kl_estimate("k3", logp, ref).item() == pytest.approx(0.5 + math.log(0.5) * -1 - 1)
    assert grpo.kl_estimate("k3", ref, ref).item() == 0.0
    with pytest.raises(ValueError, match="kind"):
        grpo.kl_estimate("k4", logp, ref)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo.kl_estimate("k1", logp, torch.zeros(2, 1))


def test_k3_is_unbiased_for_kl():
    # Sample from p, estimate KL(p||q) with k3; compare to the exact value.
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.4, 0.4, 0.2])
    idx = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    est = grpo.kl_estimate("k3", p.log()[idx][None], q.log()[idx][None]).mean()
    exact = (p * (p / q).log()).sum()
    assert est.item() == pytest.approx(exact.item(), rel=0.02)


def test_ppo_clip_golden_positive_and_negative_advantages():
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    loss, metrics = grpo.policy_loss("ppo_clip", logp, old, torch.tensor([1.0]), mask)
    # A=+1: token 1 max(-1.5, -1.28) = -1.28; token 2 max(-0.5, -0.8) = -0.5; mean -0.89.
    assert loss.item() == pytest.approx(-0.89)
    assert metrics["clip_frac"] == pytest.approx(0.5)
    loss, _ = grpo.policy_loss("ppo_clip", logp, old, torch.tensor([-1.0]), mask)
    # A=-1: token 1 max(1.5, 1.28) = 1.5; token 2 max(0.5, 0.8) = 0.8; mean 1.15.
    assert loss.item() == pytest.approx(1.15)


def test_ppo_dual_clip_caps_negative_advantage_loss():
    logp = torch.log(torch.tensor([[20.0]]))
    args = (torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1))
    assert grpo.policy_loss("ppo_clip", logp, *args)[0].item() == pytest.approx(10.0)
    assert grpo.policy_loss("ppo_clip", logp, *args, dual_clip=None)[0].item() == pytest.approx(20.0)
    # Positive advantages are never dual-clipped: the ratio is capped at 1 + eps_high.
    assert grpo.policy_loss("ppo_clip", logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1))[
        0
    ].item() == pytest.approx(-1.28)


def test_ppo_gradient_is_policy_gradient_on_policy():
    # At ratio 1 (on-policy) the gradient of the token-mean loss is −A·∇logp / n_tokens.
    logp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    loss, _ = grpo.policy_loss("ppo_clip", logp, logp.detach(), torch.tensor([2.0, -1.0]), mask)
    loss.backward()
    expected = torch.tensor([[-2.0, -2.0, 0.0], [1.0, 1.0, 1.0]]) / 5
    torch.testing.assert_close(logp.grad, expected)


def test_ppo_kl_in_loss_adds_the_estimator():
    logp = torch.zeros(1, 2)
    ref = torch.full((1, 2), math.log(0.5))
    base, _ = grpo.policy_loss("ppo_clip", logp, logp, torch.tensor([0.0]), torch.ones(1, 2))
    with_kl, metrics = grpo.policy_loss(
        "ppo_clip", logp, logp, torch.tensor([0.0]), torch.ones(1, 2), ref_logp=ref, kl_coef=0.1
    )
    assert with_kl.item() - base.item() == pytest.approx(0.1 * (0.5 + math.log(2) - 1))
    assert metrics["kl_ref"] == pytest.approx(0.5 + math.log(2) - 1)


def test_aggregation_modes_golden():
    token_loss = torch.tensor([[1.0, 2.0, 9.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert grpo.aggregate(token_loss, mask, "token_mean").item() == pytest.approx(7.0 / 3)
    assert grpo.aggregate(token_loss, mask, "seq_mean_token_mean").item() == pytest.approx((1.5 + 4.0) / 2)
    assert grpo.aggregate(token_loss, mask, "seq_mean_token_sum_norm", normalizer=4).item() == pytest.approx(7 / 8)
    with pytest.raises(ValueError, match="normalizer"):
        grpo.aggregate(token_loss, mask, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="agg"):
        grpo.aggregate(token_loss, mask, "bogus")


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_loss_and_gradient_invariant_to_rank_and_accumulation_split(agg):
    gen = torch.Generator().manual_seed(0)
    batch, steps = 8, 6
    logp = (-torch.rand(batch, steps, generator=gen)).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(batch, steps, generator=gen)
    adv = torch.randn(batch, generator=gen)
    mask = (torch.rand(batch, steps, generator=gen) > 0.3).float()
    mask[:, 0] = 1.0
    full, _ = grpo.policy_loss("ppo_clip", logp, old, adv, mask, agg=agg)
    (full_grad,) = torch.autograd.grad(full, logp)

    global_count = mask.sum().item() if agg == "token_mean" else batch
    # 2 ranks × 2 accumulation steps of 2 sequences; all-reduce-sum of accumulated micro-batch losses.
    total = 0.0
    grad = torch.zeros_like(logp)
    for start in range(0, batch, 2):
        part = slice(start, start + 2)
        piece, _ = grpo.policy_loss(
            "ppo_clip", logp[part], old[part], adv[part], mask[part], agg=agg, normalizer=global_count
        )
        total = total + piece.item()
        grad += torch.autograd.grad(piece, logp)[0]
    assert total == pytest.approx(full.item(), rel=1e-6)
    torch.testing.assert_close(grad, full_grad)


def test_ar1_softmax_golden():
    logp = torch.tensor([[-1.0, -1.0], [-0.5, -7.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, metrics = grpo.policy_loss(
        "ar1_softmax", logp, logp, torch.tensor([1.0, -1.0]), mask, group_size=2, beta=1.0
    )
    w = torch.softmax(torch.tensor([1.0, -1.0]), 0)
    assert loss.item() == pytest.approx(-(w[0] * -2.0 + w[1] * -0.5).item())
    assert metrics["weight_entropy"] > 0


def test_ar1_softmax_weights_are_constants_and_split_invariant():
    gen = torch.Generator().manual_seed(1)
    logp = (-torch.rand(8, 4, generator=gen)).requires_grad_()
    adv = torch.randn(8, generator=gen)
    mask = torch.ones(8, 4)
    full, _ = grpo.policy_loss("ar1_softmax", logp, logp.detach(), adv, mask, group_size=4, beta=2.0)
    (g,) = torch.autograd.grad(full, logp)
    w = torch.softmax(2.0 * adv.view(2, 4), 1).view(8, 1).expand(8, 4)
    torch.testing.assert_close(g, -w / 2)  # 2 groups
    halves = sum(
        grpo.policy_loss(
            "ar1_softmax", logp[s], logp[s].detach(), adv[s], mask[s], group_size=4, beta=2.0, normalizer=2
        )[0].item()
        for s in (slice(0, 4), slice(4, 8))
    )
    assert halves == pytest.approx(full.item())
    with pytest.raises(ValueError, match="group_size"):
        grpo.policy_loss("ar1_softmax", logp, logp, adv, mask, group_size=3)


def test_policy_loss_registry_and_shape_errors():
    assert {"ppo_clip", "ar1_softmax"} <= set(grpo.POLICY_LOSSES)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="unknown policy loss"):
        grpo.policy_loss("nope", x, x, torch.zeros(2), x)
    with pytest.raises(ValueError, match="advantages"):
        grpo.policy_loss("ppo_clip", x, x, torch.zeros(3), x)
    with pytest.raises(ValueError, match="logp/old_logp/mask"):
        grpo.policy_loss("ppo_clip", x, torch.zeros(2, 4), torch.zeros(2), x)
    with pytest.raises(ValueError, match="dual_clip"):
        grpo.policy_loss("ppo_clip", x, x, torch.zeros(2), x, dual_clip=0.5)
    with pytest.raises(ValueError, match="already registered"):
        grpo.register_policy_loss("ppo_clip")(lambda *a, **k: None)
