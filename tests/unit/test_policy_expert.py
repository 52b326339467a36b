"""The flow-matching expert behind the stop-gradient: the flow loss trains only the expert, the CE only the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlpost.policy.config import ModelConfig
from rlpost.policy.data import build_example, collate
from rlpost.policy.expert import FlowActionExpert, denormalise_controls, normalise_controls
from rlpost.policy.generate import expert_controls, prompt_ids
from rlpost.policy.model import PolicyModel, new_policy
from synthetic_policy import make_scenarios


@pytest.fixture(scope="module")
def setup():
    sc = make_scenarios(6)
    p = new_policy(ModelConfig(), [s.coc_trace for s in sc])
    batch = collate([build_example(p, s) for s in sc], p.tokenizer.id("<|pad|>"))
    return p, sc, batch


def _grads(module, loss):
    module.zero_grad(set_to_none=True)
    loss.backward()
    back = [q.grad for q in module.backbone.parameters()]
    exp = [q.grad for q in module.expert.parameters()]
    nonzero = lambda gs: sum(g is not None and bool(g.abs().sum() > 0) for g in gs)  # noqa: E731
    return nonzero(back), nonzero(exp)


def test_flow_loss_reaches_only_the_expert(setup):
    p, _, batch = setup
    module = PolicyModel(p.backbone, p.expert)
    # the differentiable flow loss, computed exactly as PolicyModel.forward does (its returned copy is detached)
    hidden = p.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=True).hidden_states[-1]
    flow = p.expert.flow_loss(hidden, batch["prefix_mask"], batch["controls"])
    back, exp = _grads(module, flow)
    assert back == 0, "a gradient of the flow loss reached the backbone"
    assert exp == len(list(p.expert.parameters()))


def test_ce_loss_reaches_the_backbone_not_the_expert(setup):
    p, _, batch = setup
    module = PolicyModel(p.backbone, p.expert)
    out = module(**{**batch, "controls": None})
    back, exp = _grads(module, out["loss"])
    assert back == len(list(p.backbone.parameters()))
    assert exp == 0


def test_total_loss_splits_cleanly(setup):
    """The summed SFT loss: backbone grads equal the CE-only grads (the flow term adds nothing to them)."""
    p, _, batch = setup
    module = PolicyModel(p.backbone, p.expert)
    torch.manual_seed(0)
    module.zero_grad(set_to_none=True)
    module(**batch)["loss"].backward()
    total = [q.grad.clone() for q in p.backbone.parameters()]
    module.zero_grad(set_to_none=True)
    module(**{**batch, "controls": None})["loss"].backward()
    for a, b in zip(total, (q.grad for q in p.backbone.parameters())):
        torch.testing.assert_close(a, b)


def test_sampling_shapes_and_persistence(setup, tmp_path):
    p, sc, _ = setup
    prompts = [prompt_ids(p, s) for s in sc]
    comps = [[] for _ in sc]
    u = expert_controls(p, prompts, comps, num_samples=3)
    assert u.shape == (len(sc), 3, 64, 2) and np.isfinite(u).all()
    p.expert.save(tmp_path)
    again = FlowActionExpert.load(tmp_path)
    for a, b in zip(p.expert.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    x = np.random.default_rng(0).normal(size=(64, 2))
    np.testing.assert_allclose(normalise_controls(denormalise_controls(x)), x)


def test_expert_learns_a_fixed_mapping():
    """A few hundred steps on a two-context toy problem: sampled controls approach the targets."""
    torch.manual_seed(0)
    e = FlowActionExpert(cond_dim=8, hidden_size=32, num_layers=1, num_heads=2, horizon=4)
    prefix = torch.randn(2, 3, 8)
    mask = torch.ones(2, 3, dtype=torch.bool)
    target = torch.tensor([[[1.0, -1.0]] * 4, [[-1.0, 0.5]] * 4])
    opt = torch.optim.Adam(e.parameters(), lr=3e-3)
    for _ in range(300):
        loss = e.flow_loss(prefix, mask, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    got = e.sample(prefix, mask, num_steps=10)
    assert (got - target).abs().mean() < 0.3
