"""Small "bring your own model" checkpoints for the tests of ``model.path``: random-init Llama, Qwen3 and Gemma3
causal LMs, each saved with ``save_pretrained`` beside its *own* tokenizer trained here with ``tokenizers``.

They stand in for a user's local Hugging Face folder (no model hub here), so each copies what its family really
ships, because that is what the extension (rlpost.policy.tokenizer.PolicyTokenizer.extend) and the resize
(rlpost.policy.model.build_backbone) must cope with:

- ``llama``: Llama-3 style byte-level BPE (its split regex), ``<|begin_of_text|>`` BOS added by the post-processor,
  ``tokenizer_class: PreTrainedTokenizerFast``; untied head; grouped-query attention.
- ``qwen3``: Qwen-style byte-level BPE (Qwen2's split regex), ``<|endoftext|>`` / ``<|im_start|>`` /
  ``<|im_end|>``, ``tokenizer_class: Qwen2Tokenizer``, a chat template; **tied** head (as small Qwen3s ship);
  q/k norms.
- ``gemma3``: SentencePiece-style BPE (spaces as ``▁``, byte fallback, ``<0x00>``..``<0xFF>`` byte tokens),
  ``<pad>`` ``<eos>`` ``<bos>`` ``<unk>`` ``<start_of_turn>`` ``<end_of_turn>``, ``tokenizer_class: GemmaTokenizer``;
  **tied** head, scaled embeddings (× √hidden), sliding-window layers (window 128 < the policy's context, so
  the window is really used), q/k norms, the ``gemma3_text`` config (``Gemma3ForCausalLM``).

Sizes are tiny (hidden 64, 2 layers, head_dim 32, vocabularies of a few hundred) so the tests are fast. The init
std is large (0.4, see ``INIT_STD``): a std-0.02 random model repeats one token whatever its weights, which would
make a greedy-parity or weight-sync check prove nothing (docs/machine-notes.md "Pitfalls for weight-sync tests").
"""

from __future__ import annotations

import json
from pathlib import Path

ARCHITECTURES = ("llama", "qwen3", "gemma3")
INIT_STD = 0.4
LLAMA3_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
              r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN_CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def corpus() -> list[str]:
    """Text the tokenizers are trained on: the CoC wording tables and traces of synthetic scenarios, plus a few
    general sentences (a user's tokenizer knows more than the domain; none of it is the policy's vocabulary)."""
    from rlpost.policy.model import wording_corpus
    from synthetic_policy import make_scenarios

    general = ["The quick brown fox jumps over the lazy dog.", "Numbers 0 1 2 3 4 5 6 7 8 9 10 25 100 2026.",
               "Hello, world! How are you today? I'm fine; thanks.", "A car, a bus and a bicycle wait at the light."]
    return wording_corpus() + [s.coc_trace for s in make_scenarios(32, "train", seed=7)] + general


def byte_level_bpe(split: str, specials: list[str], vocab_size: int, texts: list[str] | None = None):
    """A byte-level BPE (GPT-2 / Llama-3 / Qwen layout: ``split`` regex, then bytes) trained on ``texts``
    (default ``corpus()``); bench/_scale_rung.py builds the ladder's Qwen-style tokenizer with it too."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(corpus() if texts is None else texts, trainer)
    return tk


def _sentencepiece_bpe(specials: list[str], vocab_size: int):
    """Gemma's layout: spaces become ``▁`` in the normaliser, BPE with byte fallback over ``<0xNN>`` tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tk.normalizer = normalizers.Replace(" ", "▁")
    tk.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=specials + byte_tokens,
                                  show_progress=False)
    tk.train_from_iterator([" " + t for t in corpus()], trainer)
    # The byte tokens are ordinary vocabulary in Gemma (not special added tokens): rebuild the model with them in.
    model = json.loads(tk.to_str())
    model["added_tokens"] = [t for t in model["added_tokens"] if t["content"] in specials]
    tk = Tokenizer.from_str(json.dumps(model))
    # What Gemma's tokenizer.json holds (the split on "▁" above only kept training from merging across words).
    tk.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    return tk


def _tokenizer(arch: str):
    """(tokenizers.Tokenizer, tokenizer_config dict) of ``arch``'s family."""
    from tokenizers import processors

    if arch == "llama":
        tk = byte_level_bpe(LLAMA3_SPLIT, ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"], 420)
        bos = tk.token_to_id("<|begin_of_text|>")
        tk.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
            special_tokens=[("<|begin_of_text|>", bos)])
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                  "eos_token": "<|end_of_text|>", "model_max_length": 131072, "clean_up_tokenization_spaces": True}
    elif arch == "qwen3":
        tk = byte_level_bpe(QWEN_SPLIT, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 400)
        config = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
                  "pad_token": "<|endoftext|>", "unk_token": None, "model_max_length": 131072,
                  "chat_template": QWEN_CHAT_TEMPLATE, "add_prefix_space": False, "errors": "replace"}
    elif arch == "gemma3":
        tk = _sentencepiece_bpe(["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"], 360)
        bos = tk.token_to_id("<bos>")
        tk.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)])
        config = {"tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
                  "pad_token": "<pad>", "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
                  "model_max_length": 131072, "spaces_between_special_tokens": False}
    else:
        raise ValueError(f"arch: one of {ARCHITECTURES}, got {arch!r}")
    return tk, config


def _model(arch: str, tk, seed: int):
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    common = dict(vocab_size=tk.get_vocab_size(with_added_tokens=True), hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                  max_position_embeddings=1024, initializer_range=INIT_STD)
    if arch == "llama":
        config = LlamaConfig(**common, tie_word_embeddings=False, bos_token_id=tk.token_to_id("<|begin_of_text|>"),
                             eos_token_id=tk.token_to_id("<|end_of_text|>"), pad_token_id=None)
        cls = LlamaForCausalLM
    elif arch == "qwen3":
        config = Qwen3Config(**common, tie_word_embeddings=True, bos_token_id=None,
                             eos_token_id=tk.token_to_id("<|im_end|>"), pad_token_id=tk.token_to_id("<|endoftext|>"))
        cls = Qwen3ForCausalLM
    else:
        # Every other layer slides over a 128-token window, the policy's sequences are ~250 tokens long.
        config = Gemma3TextConfig(**common, tie_word_embeddings=True, sliding_window=128, query_pre_attn_scalar=32,
                                  layer_types=["sliding_attention", "full_attention"],
                                  bos_token_id=tk.token_to_id("<bos>"), eos_token_id=tk.token_to_id("<eos>"),
                                  pad_token_id=tk.token_to_id("<pad>"))
        cls = Gemma3ForCausalLM
    torch.manual_seed(seed)
    return cls(config).float().eval()


def save_tokenizer(arch: str, directory: str | Path):
    """Write ``arch``'s own tokenizer (tokenizer.json + tokenizer_config.json) to ``directory``; returns it."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tk, tok_config = _tokenizer(arch)
    tk.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=1))
    return tk


def build_checkpoint(arch: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a random-init ``arch`` causal LM and its own tokenizer to ``directory`` (a user's local HF folder)."""
    d = Path(directory)
    tk = save_tokenizer(arch, d)
    _model(arch, tk, seed).save_pretrained(str(d), safe_serialization=True)
    return d
