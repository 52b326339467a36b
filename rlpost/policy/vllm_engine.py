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

    if max_model_len is None:
        import json

        max_model_len = json.loads((Path(ckpt) / "config.json").read_text())["max_position_embeddings"]
    return LLM(model=str(ckpt), dtype="float32", max_model_len=max_model_len, enforce_eager=True, seed=seed,
               logits_processors=[VLLMPhaseLogitsProcessor], **kwargs)


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
