"""``model.path`` ("bring your own model") without a model forward: the errors a user gets for a folder that is
not a usable causal LM, and the extension of each tested family's own tokenizer (tests/byo_models.py)."""

from __future__ import annotations

import json

import pytest
from byo_models import ARCHITECTURES, save_tokenizer

from rlpost.common.errors import MissingPathError, UserError
from rlpost.policy.model import check_model_path
from rlpost.policy.scene import scene_vocabulary
from rlpost.policy.tokenizer import SPECIAL_TOKENS, PolicyTokenizer


def test_missing_folder_and_missing_config_name_the_field(tmp_path):
    with pytest.raises(MissingPathError, match=r"model.path: '/nonexistent/hf' does not exist"):
        check_model_path("/nonexistent/hf")
    with pytest.raises(MissingPathError, match="model.path: .* has no config.json"):
        check_model_path(str(tmp_path))


def test_folder_without_tokenizer_is_refused(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(MissingPathError, match="model.path: .* has no tokenizer"):
        check_model_path(str(tmp_path))


def test_unsupported_architectures_are_refused(tmp_path):
    from transformers import ViTConfig

    vit = tmp_path / "vit"
    ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2).save_pretrained(vit)
    save_tokenizer("llama", vit)
    with pytest.raises(UserError, match="model.path: .* is a 'vit' model .*not a causal LM"):
        check_model_path(str(vit))
    unknown = tmp_path / "unknown"
    save_tokenizer("llama", unknown)
    (unknown / "config.json").write_text(json.dumps({"model_type": "no_such_model", "architectures": ["NoSuch"]}))
    with pytest.raises(UserError, match="model.path: transformers cannot read"):
        check_model_path(str(unknown))


def test_run_config_preflight_checks_model_path_before_sft():
    from rlpost.common.config import ConfigError
    from rlpost.rl.config import RunConfig

    cfg = RunConfig(model={"size": None, "path": "/nonexistent/hf"})  # loads: configs for other machines do
    with pytest.raises(ConfigError, match="model.path: '/nonexistent/hf' does not exist"):
        cfg.preflight(need_data=False)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_extended_tokenizers_agree_with_transformers(arch, tmp_path):
    """Each family's own tokenizer, extended: the policy's tokens are one id each, the base's special tokens are
    kept out of the trace vocabulary, and transformers (hence vLLM) reloads the saved result to the same ids."""
    save_tokenizer(arch, tmp_path / "base")
    base_config = {"llama": "LlamaConfig", "qwen3": "Qwen3Config", "gemma3": "Gemma3TextConfig"}[arch]
    import transformers

    getattr(transformers, base_config)(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                       head_dim=32).save_pretrained(tmp_path / "base")
    tok = PolicyTokenizer.extend(tmp_path / "base", scene_vocabulary(), 16)
    base_specials = {"llama": ["<|begin_of_text|>", "<|end_of_text|>"], "qwen3": ["<|endoftext|>", "<|im_end|>"],
                     "gemma3": ["<bos>", "<eos>", "<pad>", "<mask>"]}[arch]  # transformers adds Gemma's <mask>
    trace = set(tok.trace_ids.tolist())
    assert all(tok.vocab[t] not in trace for t in base_specials + list(SPECIAL_TOKENS))
    assert tok.encode("<v3><tl_red><|cot_start|><A15><K0>") == [
        tok.vocab[t] for t in ("<v3>", "<tl_red>", "<|cot_start|>", "<A15>", "<K0>")]
    texts = [" The light ahead is red, so I will stop.", "<v3><|cot_start|> Keep 12 m to the lead<|cot_end|>"]
    assert tok.transformers_mismatches(tmp_path / "base", texts) == []
    tok.save(tmp_path / "policy")
    again = PolicyTokenizer.load(tmp_path / "policy")
    assert again.vocab_size == tok.vocab_size and (again.trace_ids == tok.trace_ids).all()
    assert tok.decode_trace(tok.encode_trace("The light ahead is red.")) == "The light ahead is red."
