"""vLLM with the policy's phase-constrained decoding, through vLLM's public logits-processor API.

``make_llm(ckpt)`` starts ``vllm.LLM`` on a checkpoint directory with :class:`VLLMPhaseLogitsProcessor` installed
(also loadable by name, ``"rlpost.policy.vllm_engine:VLLMPhaseLogitsProcessor"``, e.g. in a multiprocess engine or
``vllm serve --logits-processors``). The processor reads the same ``phase_rules.json`` table as the HF processor
(:mod:`rlpost.policy.constraints`) from the model directory, and applies it to requests whose
``SamplingParams.extra_args`` has ``{"rlpost_phases": True}`` (:func:`sampling_params` sets it).

CPU settings (docs/machine-notes.md): ``dtype="float32"``, ``enforce_eager=True``, a small
``VLLM_CPU_KVCACHE_SPACE`` and in-process mode (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) by default.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rlpost.policy.constraints import RULES_FILE, PhaseRules, PhaseTracker, apply_masks

try:  # vLLM is an optional dependency (extra "cpu" / "gpu")
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality
except ImportError:  # pragma: no cover
    LogitsProcessor = object  # type: ignore[assignment,misc]
    BatchUpdate = MoveDirectionality = None  # type: ignore[assignment]

EXTRA_ARG = "rlpost_phases"


class VLLMPhaseLogitsProcessor(LogitsProcessor):
    """Batch-level vLLM logits processor applying :class:`PhaseRules` to opted-in requests.

    Per request it keeps a :class:`PhaseTracker` and a reference to vLLM's running output-token list, and advances
    the tracker over the tokens appended since the last step. Not argmax-invariant (it changes greedy choices).
    """

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        model_dir = Path(str(vllm_config.model_config.model))
        self.rules = PhaseRules.load(model_dir) if (model_dir / RULES_FILE).exists() else None
        self.masks = self.rules.masks(device=device) if self.rules else {}
        self.state: dict[int, tuple[PhaseTracker, list[int], list[int]]] = {}  # index -> (tracker, outputs, [seen])

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update) -> None:
        if not batch_update:
            return
        for index, params, _prompt, output_ids in batch_update.added:
            extra = getattr(params, "extra_args", None) or {}
            if self.rules is not None and extra.get(EXTRA_ARG):
                self.state[index] = (self.rules.tracker(), output_ids, [0])
            else:
                self.state.pop(index, None)
        for index in batch_update.removed:
            self.state.pop(index, None)
        for a, b, direction in batch_update.moved:
            sa, sb = self.state.pop(a, None), self.state.pop(b, None)
            if sa is not None:
                self.state[b] = sa
            if sb is not None and direction == MoveDirectionality.SWAP:
                self.state[a] = sb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.state:
            return logits
        keys: list = [None] * logits.shape[0]
        for index, (tracker, outputs, seen) in self.state.items():
            if index >= logits.shape[0]:
                continue
            for t in outputs[seen[0]:]:
                tracker.step(t)
            seen[0] = len(outputs)
            keys[index] = tracker.key()
        return apply_masks(logits, keys, self.masks)


def make_llm(ckpt: str | Path, max_model_len: int | None = None, seed: int = 0, kv_cache_gib: int = 1,
             in_process: bool = True, **kwargs):
    """``vllm.LLM`` on a policy checkpoint with the phase processor installed (float32, eager, CPU-friendly)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
    if in_process:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if "RAY_RAYLET_PID" not in os.environ:
        # A process of its own (eval, SFT, a test) stays on loopback; in a Ray actor the deployment decides
        # (loopback for a local Ray, the node's own address on a cluster: rlpost.common.runtime.deployment_env).
        os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")
    from vllm import LLM

    check_vllm_architecture(ckpt)
    if max_model_len is None:
        max_model_len = context_length(ckpt)
    return LLM(model=str(ckpt), dtype="float32", max_model_len=max_model_len, enforce_eager=True, seed=seed,
               logits_processors=[VLLMPhaseLogitsProcessor], **kwargs)


def context_length(ckpt: str | Path) -> int:
    """The engine's ``max_model_len``: the backbone's context, capped at the policy's own
    (``rlpost_model.json``'s ``max_position_embeddings``) when the checkpoint is a policy. A model from
    ``model.path`` keeps its native context in config.json (e.g. 32k for Gemma 3 270M), and vLLM refuses to start
    when its KV cache (``VLLM_CPU_KVCACHE_SPACE``) cannot hold one sequence of that length."""
    import json

    d = Path(ckpt)
    native = int(json.loads((d / "config.json").read_text())["max_position_embeddings"])
    if (d / "rlpost_model.json").is_file():
        return min(native, int(json.loads((d / "rlpost_model.json").read_text())["max_position_embeddings"]))
    return native


def check_vllm_architecture(ckpt: str | Path) -> None:
    """A ``UserError`` naming ``model.path`` when the installed vLLM cannot serve the checkpoint's architecture
    (otherwise vLLM fails deep inside its start-up, or falls back to a slow transformers backend)."""
    import json

    from vllm.model_executor.models.registry import ModelRegistry

    from rlpost.common.errors import UserError

    archs = json.loads((Path(ckpt) / "config.json").read_text()).get("architectures") or []
    supported = set(ModelRegistry.get_supported_archs())
    if not any(a in supported for a in archs):
        import vllm

        raise UserError(f"model.path: {ckpt} is a {', '.join(archs) or 'model without architectures'}, which vLLM "
                        f"{vllm.__version__} does not serve; start from a causal LM it supports (tested: "
                        "LlamaForCausalLM, Qwen3ForCausalLM, Gemma3ForCausalLM)")


def repack_tied_head(worker) -> bool:
    """Run with ``llm.collective_rpc(repack_tied_head)`` after ``reload_weights``: re-derive a tied LM head's
    kernel weights from the (reloaded) embedding. Returns whether the engine's head is tied (and was repacked).

    Why: vLLM's layer-wise reload restores every layer from its kept tensors and re-processes only the layers it
    received weights for. A tied model sends its shared matrix once, as the embedding (``lm_head.weight`` is skipped
    by the model's loader), so the head layer counts as "not loaded": its parameter is the shared one and does hold
    the new values, but the CPU backend's prepacked GEMM weight (``dispatch_cpu_unquantized_gemm``, built by the
    head's ``process_weights_after_loading``) is the old one, and the head keeps scoring with the old matrix
    (measured: probe gap 9.7 on a tiny Qwen3, 8e-6 after this). Re-running the head's processing repacks it; on
    GPU the unquantized method has nothing to repack and this is a no-op. Quantized heads are left alone (their
    processing need not be idempotent); the loop's log-prob probe still checks every sync."""
    runner = worker.model_runner
    model = runner.get_model() if hasattr(runner, "get_model") else runner.model
    head = getattr(model, "lm_head", None)
    weight = getattr(head, "weight", None)
    # Tied = another module (the embedding) holds the very same parameter; vLLM's get_input_embeddings takes ids.
    if weight is None or not any(m is not head and getattr(m, "weight", None) is weight for m in model.modules()):
        return False
    if type(head.quant_method).__name__ != "UnquantizedEmbeddingMethod":
        return False
    head.quant_method.process_weights_after_loading(head)
    return True


def sampling_params(max_tokens: int, temperature: float = 0.0, top_p: float = 1.0, n: int = 1,
                    seed: int | None = None, logprobs: int | None = None, constrained: bool = True, **kwargs):
    """``vllm.SamplingParams`` opted in to the phase rules (temperature 0 = greedy).

    No detokenisation by default: completions are decoded from their token ids (``decode_completion``), so vLLM's
    incremental detokenisation of every sequence at every step would be wasted work (pass ``detokenize=True`` for
    ``output.text``)."""
    from vllm import SamplingParams

    kwargs.setdefault("detokenize", False)
    extra = {EXTRA_ARG: bool(constrained)}
    return SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed,
                          logprobs=logprobs, extra_args=extra, skip_special_tokens=False, **kwargs)
