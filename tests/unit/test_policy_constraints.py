"""Phase-constrained decoding: the rule table, the tracker and the HF logits processor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlpost.policy.config import ModelConfig
from rlpost.policy.constraints import HFPhaseLogitsProcessor, PhaseRules
from rlpost.policy.generate import decode_completion, hf_generate, prompt_ids
from rlpost.policy.model import new_policy
from rlpost.policy.tokenizer import COT_END, TRAJ_END, TRAJ_START
from synthetic_policy import make_scenarios


@pytest.fixture(scope="module")
def policy():
    sc = make_scenarios(8)
    cfg = ModelConfig(init_std=0.5, max_trace_tokens=12, num_bins=32)
    return new_policy(cfg, [s.coc_trace for s in sc]), sc


def test_rules_json_round_trip(policy, tmp_path):
    p, _ = policy
    p.rules.save(tmp_path)
    again = PhaseRules.load(tmp_path)
    assert again.to_json() == p.rules.to_json()


def test_tracker_walks_the_phases(policy):
    p, _ = policy
    tok = p.tokenizer
    tr = p.rules.tracker()
    assert set(tr.allowed()) == set(tok.trace_ids.tolist()) | {tok.id(COT_END)}
    tr.feed(tok.encode_trace("I will halt."))
    tr.step(tok.id(COT_END))
    assert tr.allowed() == (tok.id(TRAJ_START),)
    tr.step(tok.id(TRAJ_START))
    for k in range(128):
        assert set(tr.allowed()) == set((tok.accel_ids if k % 2 == 0 else tok.curv_ids).tolist())
        tr.step(tr.allowed()[0])
    assert tr.allowed() == (tok.id(TRAJ_END),)
    assert tr.violations == 0
    forced = p.rules.tracker().feed([tok.trace_ids[5]] * 12)
    assert forced.allowed() == (tok.id(COT_END),)


def test_processor_masks_disallowed_tokens(policy):
    p, _ = policy
    proc = HFPhaseLogitsProcessor(p.rules)
    scores = torch.zeros(2, p.tokenizer.vocab_size)
    out = proc(torch.zeros(2, 5, dtype=torch.long), scores.clone())
    allowed = torch.isfinite(out[0])
    assert not allowed[torch.as_tensor(p.tokenizer.accel_ids)].any()
    assert allowed[p.tokenizer.id(COT_END)]


def test_unconstrained_random_model_breaks_structure_constrained_does_not(policy):
    p, sc = policy
    prompts = [prompt_ids(p, s) for s in sc]
    free = hf_generate(p, prompts, constrained=False)
    assert sum(p.tokenizer.split_completion(c[0])[1] is not None for c in free) < len(sc)
    for greedy in (True, False):
        out = hf_generate(p, prompts, greedy=greedy, num_samples=2, seed=3)
        for comps in out:
            for c in comps:
                tr = p.rules.tracker().feed(c)
                assert tr.violations == 0 and tr.phase == "done"
                d = decode_completion(p.tokenizer, c, 5.0)
                assert d.controls.shape == (64, 2) and np.isfinite(d.states).all()
                assert len(p.tokenizer.split_completion(c)[0]) <= 12
