"""SFT examples: one scenario -> the teacher-forced token sequence (docs/design.md §1) and the expert's target controls.

    [scene tokens] <|cot_start|> trace tokens <|cot_end|> <|traj_start|> 128 bins <|traj_end|>

Loss positions: everything after the prompt (trace, <|cot_end|>, <|traj_start|>, bins, <|traj_end|>); the
trajectory positions are flagged so their CE is reported (and weighted) separately. The expert's prefix is the
prompt + trace + ``<|cot_end|><|traj_start|>``; its target is the scenario's continuous expert controls, normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlpost.policy.expert import normalise_controls
from rlpost.policy.generate import prompt_ids
from rlpost.policy.tokenizer import COT_END, PAD, TRAJ_END, TRAJ_START, TRAJ_TOKENS


@dataclass
class Example:
    input_ids: list[int]
    prompt_len: int
    prefix_len: int  # tokens the expert reads (prompt + trace + <|cot_end|><|traj_start|>)
    controls: np.ndarray  # (64, 2) normalised expert controls


def build_example(policy, scenario, zero_curvature_below: float = 1.0) -> Example:
    """The SFT example of ``scenario``: prompt + ground-truth trace + trajectory tokens, and the expert's target
    (:func:`expert_targets`)."""
    tok = policy.tokenizer
    prompt = prompt_ids(policy, scenario)
    trace = tok.encode_trace(str(scenario.coc_trace or ""))[: policy.config.max_trace_tokens]
    head = prompt + trace + [tok.id(COT_END), tok.id(TRAJ_START)]
    controls, target = expert_targets(tok, scenario, zero_curvature_below)
    traj = tok.encode_controls(controls).tolist()
    return Example(head + traj + [tok.id(TRAJ_END)], len(prompt), len(head), target.astype(np.float32))


def expert_targets(tok, scenario, zero_curvature_below: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(controls the trajectory tokens encode ``(64, 2)``, the flow expert's normalised target ``(64, 2)``) of a
    scenario's expert controls; SFT and the expert's training during RL use the same targets.

    Curvature of steps starting below ``zero_curvature_below`` m/s is set to 0: near standstill curvature is
    unobservable and the fitted value (up to 100+ σ) sits on the clamp bins (14 % of low-speed steps in the
    2,000-scenario set), which teaches greedy decoding to lock onto them. The expert's target is also clipped to
    the bins' physical ranges: an unclipped 100 σ curvature would dominate the flow loss (and its gradient clip).
    """
    controls = np.array(scenario.expert_controls, dtype=np.float64)
    hist, fut = np.asarray(scenario.history, dtype=np.float64), np.asarray(scenario.future, dtype=np.float64)
    speed_before = np.concatenate([hist[-1:, 3], fut[:-1, 3]])
    controls[speed_before < zero_curvature_below, 1] = 0.0
    clipped = np.stack([np.clip(controls[:, 0], *tok.bins.accel_range),
                        np.clip(controls[:, 1], *tok.bins.curvature_range)], -1)
    return controls, normalise_controls(clipped)


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch for :class:`rlpost.policy.model.PolicyModel`."""
    width = max(len(e.input_ids) for e in examples)
    b = len(examples)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    labels = torch.full((b, width), -100, dtype=torch.long)
    attn = torch.zeros((b, width), dtype=torch.long)
    traj = torch.zeros((b, width), dtype=torch.bool)
    prefix = torch.zeros((b, width), dtype=torch.bool)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        attn[i, :n] = 1
        labels[i, e.prompt_len:n] = ids[i, e.prompt_len:n]
        traj[i, e.prefix_len:e.prefix_len + TRAJ_TOKENS] = True
        prefix[i, :e.prefix_len] = True
    controls = torch.from_numpy(np.stack([e.controls for e in examples]))
    return {"input_ids": ids, "attention_mask": attn, "labels": labels, "traj_mask": traj, "prefix_mask": prefix,
            "controls": controls}


def batches(examples: list[Example], batch_size: int, seed: int, pad_id: int):
    """Endless shuffled batches (a new permutation each epoch)."""
    rng = np.random.default_rng(seed)
    batch_size = min(batch_size, len(examples))
    while True:
        order = rng.permutation(len(examples))
        for s in range(0, len(order) - batch_size + 1, batch_size):
            yield collate([examples[i] for i in order[s:s + batch_size]], pad_id)


def pad_id(policy) -> int:
    return policy.tokenizer.id(PAD)
