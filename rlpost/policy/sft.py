"""SFT (AR1 stages 1+2): teacher forcing on CoC + trajectory tokens, with DeepSpeed, plus the flow expert.

One process (world size 1 is enough on a CPU; more ranks work with ``torchrun`` / Ray actors setting RANK etc.).
DeepSpeed runs on the gloo backend with torch's AdamW as the client optimizer (DeepSpeed's CPU Adam JIT-compiles
for a minute) and the ZeRO stage from the config. The engine wraps :class:`PolicyModel` (backbone + expert): the
CE losses train the backbone, the flow loss trains only the expert (stop-gradient).

Outputs under ``sft.out``: ``final/`` (and ``step_<n>/`` every ``save_every``) checkpoints written with
``save_pretrained`` (transformers and vLLM load them directly), ``metrics.jsonl`` (one line per log / eval).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rlpost.common.errors import UserError
from rlpost.policy.config import ModelConfig, SFTConfig
from rlpost.policy.data import batches, build_example, collate, pad_id
from rlpost.policy.model import Policy, PolicyModel, check_model_path, new_policy, save_policy
from rlpost.policy.supervised import Optimisation, train_supervised


@dataclass
class SFTResult:
    checkpoint: Path
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)  # metrics rows (train and eval)


@torch.no_grad()
def teacher_forced_eval(module: PolicyModel, examples, pad: int, batch_size: int = 32) -> dict:
    """Mean losses and trajectory-token accuracy on ``examples`` (teacher forcing)."""
    module.eval()
    sums: dict[str, float] = {}
    correct = total = 0
    n = 0
    for s in range(0, len(examples), batch_size):
        batch = collate(examples[s:s + batch_size], pad)
        out = module(**batch)
        w = len(examples[s:s + batch_size])
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v) * w
        n += w
        logits = module.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        pred = logits[:, :-1].argmax(-1)
        sel = batch["traj_mask"][:, 1:] & (batch["labels"][:, 1:] != -100)
        correct += int((pred[sel] == batch["labels"][:, 1:][sel]).sum())
        total += int(sel.sum())
    module.train()
    return {f"val_{k}": v / max(n, 1) for k, v in sums.items()} | {"val_traj_acc": correct / max(total, 1)}


def run_sft(model_cfg: ModelConfig, cfg: SFTConfig, train=None, val=None, policy: Policy | None = None,
            log=print) -> SFTResult:
    """Train a policy on ``train`` scenarios (default: ``cfg.data`` split ``cfg.train_split``); returns the final
    checkpoint path, steps done, wall time and the metric rows."""
    from rlpost.common.runtime import configure_cpu_runtime

    if model_cfg.path is not None:
        check_model_path(model_cfg.path)
    configure_cpu_runtime(threads=cfg.threads)
    t_start = time.time()
    if train is None or val is None:
        from rlpost.scenarios.schema import read_scenarios

        train = train if train is not None else read_scenarios(cfg.data, cfg.train_split)
        val = val if val is not None else read_scenarios(cfg.data, cfg.val_split)
    if cfg.max_train_scenarios:
        train = train[: cfg.max_train_scenarios]
    if not train:
        raise UserError(f"sft.data: no training scenarios in {cfg.data} (split {cfg.train_split!r}); build the "
                        f"dataset with `rlpost data build --out {cfg.data}` or point sft.data at one")
    policy = policy or new_policy(model_cfg, [s.coc_trace for s in train])
    tok = policy.tokenizer
    train_ex = [build_example(policy, s, cfg.zero_curvature_below) for s in train]
    val_ex = [build_example(policy, s, cfg.zero_curvature_below) for s in val[: cfg.eval_scenarios]]
    pad = pad_id(policy)
    lengths = [len(e.input_ids) for e in train_ex]
    log(f"sft: {len(train_ex)} train / {len(val_ex)} val examples, tokens/seq mean {np.mean(lengths):.0f} "
        f"max {max(lengths)}, vocab {tok.vocab_size}, backbone {sum(p.numel() for p in policy.backbone.parameters()):,}"
        f" params, expert {sum(p.numel() for p in policy.expert.parameters()) if policy.expert else 0:,}")

    torch.manual_seed(cfg.seed)
    module = PolicyModel(policy.backbone, policy.expert, cfg.trace_weight, cfg.traj_weight,
                         model_cfg.expert.loss_weight, model_cfg.expert.time_beta)
    opt = Optimisation(steps=cfg.steps, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, lr=cfg.lr,
                       min_lr_ratio=cfg.min_lr_ratio, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
                       grad_clip=cfg.grad_clip, max_minutes=cfg.max_minutes, cosine_follows_budget=False,
                       engine="deepspeed", zero_stage=cfg.zero_stage)

    def save(m: PolicyModel, folder: Path) -> Path:
        return save_policy(folder, m.backbone, tok, model_cfg, m.expert, policy.rules)

    def evaluate(m: PolicyModel, last: bool) -> dict:
        return teacher_forced_eval(m, val_ex, pad)

    done = train_supervised(module, batches(train_ex, cfg.batch_size // cfg.grad_accum, cfg.seed, pad), opt,
                            Path(cfg.out), save, evaluate if val_ex else None, cfg.eval_every, cfg.save_every,
                            log_every=25, started=t_start, name="sft", progress=cfg.progress, log=log)
    seconds = time.time() - t_start
    log(f"sft: {done.steps} steps in {seconds:.0f} s ({done.tokens / max(done.seconds, 1e-9):.0f} tokens/s); "
        f"checkpoint {done.checkpoint}")
    return SFTResult(done.checkpoint, done.steps, seconds, done.history)
