"""The policy tokenizer: round trips, whole-word tokens, bins, and agreement with transformers' AutoTokenizer."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rlpost.policy.config import ModelConfig
from rlpost.policy.model import build_tokenizer, wording_corpus
from rlpost.policy.scene import scene_vocabulary
from rlpost.policy.tokenizer import COT_END, COT_START, TRAJ_END, TRAJ_START, PolicyTokenizer, scene_token
from synthetic_policy import make_scenarios


@pytest.fixture(scope="module")
def traces():
    return [s.coc_trace for s in make_scenarios(40)]


@pytest.fixture(scope="module")
def tok(traces):
    return build_tokenizer(ModelConfig(num_bins=64), traces)


def test_trace_round_trip_and_whole_words(tok, traces):
    for t in traces:
        ids = tok.encode_trace(t)
        assert tok.decode_trace(ids) == " ".join(t.split())
        # every whitespace-separated word of the corpus is one token (punctuation is its own token)
        words = [w.strip(".,;:") for w in t.split()]
        assert len(ids) <= 2 * len(words) + 2


def test_composed_traces_cover_vocabulary(tok):
    """Traces composed for every decision with fresh randomness: every word is one whole token."""
    import re

    from rlpost.domain.coc import ALL_DECISIONS, CausalFactor, FactorCategory, compose_trace

    rng = random.Random(7)
    split = set()
    for d in ALL_DECISIONS:
        for _ in range(2):
            t = compose_trace(d, [CausalFactor(rng.choice(list(FactorCategory)))], rng)
            assert tok.decode_trace(tok.encode_trace(t)) == " ".join(t.split())
            split |= {w for w in re.findall(r"[A-Za-z]+", t) if len(tok.encode(" " + w)) != 1}
    assert not split


def test_unknown_words_never_crash(tok):
    text = "Zyzzyva überholt 🚗 quickly"
    assert tok.decode_trace(tok.encode_trace(text)) == text
    assert tok.encode_scene(["v3", "no_such_scene_word"])[1] == tok.id("<|unk|>")


def test_scene_and_bins_are_single_tokens(tok):
    words = scene_vocabulary()
    ids = tok.encode("".join(scene_token(w) for w in words))
    assert ids == tok.encode_scene(words)
    assert len(set(ids)) == len(words)
    assert len(set(tok.accel_ids) | set(tok.curv_ids)) == 2 * 64
    assert not set(tok.trace_ids) & (set(tok.accel_ids) | set(tok.curv_ids) | set(tok.scene_ids))


def test_controls_round_trip_within_half_bin(tok):
    rng = np.random.default_rng(0)
    (a_lo, a_hi), (k_lo, k_hi) = tok.bins.accel_range, tok.bins.curvature_range
    u = np.stack([rng.uniform(a_lo + 1e-6, a_hi - 1e-6, 64), rng.uniform(k_lo + 1e-6, k_hi - 1e-6, 64)], -1)
    ids = tok.encode_controls(u)
    assert ids.shape == (128,)
    assert np.isin(ids[0::2], tok.accel_ids).all() and np.isin(ids[1::2], tok.curv_ids).all()
    back = tok.decode_controls(ids)
    assert np.all(np.abs(back - u) <= tok.bins.bin_widths / 2 + 1e-12)
    with pytest.raises(ValueError):
        tok.decode_controls(ids[::-1])  # K, A order is not a trajectory


def test_split_completion(tok):
    traj = tok.encode_controls(np.zeros((64, 2))).tolist()
    trace = tok.encode_trace("I will halt.")
    comp = trace + [tok.id(COT_END), tok.id(TRAJ_START)] + traj + [tok.id(TRAJ_END)]
    got_trace, got_traj = tok.split_completion(comp)
    assert got_trace == trace and got_traj == traj
    assert tok.split_completion(trace + [tok.id(COT_END), tok.id(TRAJ_START)] + traj[:10])[1] is None


def test_save_load_and_auto_tokenizer_agree(tok, tmp_path):
    """tokenizers, PolicyTokenizer.load and transformers' AutoTokenizer (Qwen2Tokenizer for a qwen2 config) agree."""
    import json

    from transformers import AutoTokenizer

    tok.save(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "vocab_size": tok.vocab_size}))
    again = PolicyTokenizer.load(tmp_path)
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    text = ("".join(scene_token(w) for w in ["v12", "acc0", "tl_red", "td5"]) + COT_START
            + " The light ahead is red, so the ego should come to a stop." + COT_END
            + TRAJ_START + "<A3><K5>" + TRAJ_END)
    ids = tok.encode(text)
    assert again.encode(text) == ids
    assert auto(text, add_special_tokens=False).input_ids == ids
    assert auto.eos_token_id == tok.id(TRAJ_END) and auto.pad_token_id == tok.id("<|pad|>")
    assert auto.decode(ids, skip_special_tokens=True) == tok.decode(ids)


def test_wording_corpus_is_not_empty():
    assert len(wording_corpus()) > 50


def test_completion_budget_covers_trace_markers_and_trajectory(tmp_path):
    import pytest

    from rlpost.policy.config import ModelConfig
    from rlpost.policy.generate import completion_budget
    from rlpost.policy.model import MODEL_CONFIG_FILE, load_model_config
    from rlpost.policy.tokenizer import TRAJ_TOKENS

    cfg = ModelConfig(size="tiny", max_trace_tokens=40)
    assert TRAJ_TOKENS == 128 and completion_budget(cfg) == 40 + 1 + 1 + 128 + 1
    (tmp_path / MODEL_CONFIG_FILE).write_text(cfg.model_dump_json())
    assert load_model_config(tmp_path) == cfg
    with pytest.raises(FileNotFoundError, match="not a policy checkpoint"):
        load_model_config(tmp_path / "missing")
