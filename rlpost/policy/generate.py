"""Prompts, generation (transformers or vLLM, phase-constrained) and decoding completions into traces and controls.

- :func:`prompt_ids`: scene words -> ids, then ``<|cot_start|>``; the completion starts with the trace.
- :func:`hf_generate` / :func:`vllm_generate`: completions (token ids after the prompt) under the phase rules.
- :func:`decode_completion`: trace text, controls (64, 2) and waypoints (64, 4) via the unicycle model.
- :func:`expert_controls`: the flow expert's controls, conditioned on the backbone's prefix states of
  prompt + trace + ``<|cot_end|><|traj_start|>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlpost.domain.decode import DecodeStatus
from rlpost.domain.trajectory import unicycle_rollout
from rlpost.policy.constraints import HFPhaseLogitsProcessor
from rlpost.policy.expert import denormalise_controls
from rlpost.policy.scene import encode_scene
from rlpost.policy.tokenizer import COT_END, COT_START, PAD, TRAJ_END, TRAJ_START, TRAJ_TOKENS


def prompt_ids(policy, scenario) -> list[int]:
    """The prompt of one scenario: scene tokens (truncated to ``max_prompt_tokens``) + ``<|cot_start|>``."""
    cfg, tok = policy.config, policy.tokenizer
    words = encode_scene(scenario, cfg.max_agents, cfg.max_prompt_tokens - 1)
    return tok.encode_scene(words) + [tok.id(COT_START)]


def completion_budget(model_cfg) -> int:
    """The longest completion of a policy built from ``model_cfg``: trace + <|cot_end|> + <|traj_start|> + 128 bins
    + <|traj_end|> (also Dr.GRPO's constant normaliser)."""
    return model_cfg.max_trace_tokens + TRAJ_TOKENS + 3


def max_new_tokens(policy) -> int:
    """The generation budget of ``policy`` (:func:`completion_budget` of its config)."""
    return completion_budget(policy.config)


@torch.no_grad()
def hf_generate(policy, prompts: list[list[int]], greedy: bool = True, num_samples: int = 1,
                temperature: float = 0.6, top_p: float = 0.98, seed: int = 0, batch_size: int = 64,
                constrained: bool = True) -> list[list[list[int]]]:
    """Completions per prompt (``num_samples`` each) with ``transformers`` generate; left-padded batches."""
    from transformers import LogitsProcessorList

    tok, model = policy.tokenizer, policy.backbone
    pad = tok.id(PAD)
    out: list[list[list[int]]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
        procs = LogitsProcessorList([HFPhaseLogitsProcessor(policy.rules)] if constrained else [])
        torch.manual_seed(seed + start)
        kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens(policy),
                             logits_processor=procs, num_return_sequences=1 if greedy else num_samples,
                             eos_token_id=tok.id(TRAJ_END), pad_token_id=pad, **kw)
        comp = gen[:, width:].tolist()
        k = 1 if greedy else num_samples
        for i in range(len(chunk)):
            out.append([_strip(c, tok) for c in comp[i * k:(i + 1) * k]])
    return out


def _strip(ids: list[int], tok) -> list[int]:
    """Cut a completion after its first <|traj_end|> (and drop padding)."""
    end = tok.id(TRAJ_END)
    return ids[: ids.index(end) + 1] if end in ids else [i for i in ids if i != tok.id(PAD)]


def vllm_generate(llm, policy, prompts: list[list[int]], greedy: bool = True, num_samples: int = 1,
                  temperature: float = 0.6, top_p: float = 0.98, seed: int = 0,
                  constrained: bool = True) -> list[list[list[int]]]:
    """Completions per prompt with a vLLM engine from :func:`rlpost.policy.vllm_engine.make_llm`."""
    from rlpost.policy.vllm_engine import sampling_params

    if greedy:
        sp = sampling_params(max_new_tokens(policy), temperature=0.0, n=1, constrained=constrained)
    else:
        sp = sampling_params(max_new_tokens(policy), temperature=temperature, top_p=top_p, n=num_samples,
                             seed=seed, constrained=constrained)
    reqs = [{"prompt_token_ids": p} for p in prompts]
    results = llm.generate(reqs, sp, use_tqdm=False)
    return [[_strip(list(o.token_ids), policy.tokenizer) for o in r.outputs] for r in results]


@dataclass
class Decoded:
    """One decoded completion: the trace text, and controls/states when the trajectory is complete (else None)."""

    trace: str
    controls: np.ndarray | None  # (64, 2) a [m/s²], κ [1/m]
    states: np.ndarray | None  # (64, 4) x, y, yaw, v in the ego frame at t0
    status: DecodeStatus = "ok"


def decode_completion(tok, completion: list[int], v0: float) -> Decoded:
    """Split ``completion`` (ids after the prompt) into the trace text and the trajectory, rolled out from speed
    ``v0`` [m/s]; the status says why a trajectory is missing."""
    trace_ids, traj = tok.split_completion(completion)
    text = tok.decode_trace(trace_ids)
    if traj is None:
        status = "malformed_trajectory" if tok.id(TRAJ_START) in completion else "no_trajectory"
        return Decoded(text, None, None, status)
    controls = tok.decode_controls(traj)
    return Decoded(text, controls, unicycle_rollout(controls, v0))


@torch.no_grad()
def expert_controls(policy, prompts: list[list[int]], completions: list[list[int]], num_samples: int = 1,
                    seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """Controls ``(B, num_samples, 64, 2)`` from the flow expert; sample 0 starts from zeros (deterministic), the
    others from Gaussian noise."""
    tok, model, expert = policy.tokenizer, policy.backbone, policy.expert
    if expert is None:
        raise ValueError("policy has no action expert (model.expert.enabled was false)")
    pad = tok.id(PAD)
    tail = [tok.id(COT_END), tok.id(TRAJ_START)]
    gen = torch.Generator().manual_seed(seed)
    results = []
    for start in range(0, len(prompts), batch_size):
        seqs = []
        for p, c in zip(prompts[start:start + batch_size], completions[start:start + batch_size]):
            trace, _ = tok.split_completion(c)
            seqs.append(p + trace[: policy.config.max_trace_tokens] + tail)
        width = max(len(s) for s in seqs)
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        hidden_r = hidden.repeat_interleave(num_samples, 0)
        mask_r = mask.bool().repeat_interleave(num_samples, 0)
        noise = torch.randn(hidden_r.shape[0], expert.horizon, expert.action_dim, generator=gen)
        noise.view(len(seqs), num_samples, expert.horizon, -1)[:, 0] = 0.0
        x = expert.sample(hidden_r, mask_r, policy.config.expert.num_steps, noise)
        results.append(x.view(len(seqs), num_samples, expert.horizon, -1).numpy())
    return denormalise_controls(np.concatenate(results))
