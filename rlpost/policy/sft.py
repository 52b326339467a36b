"""SFT (AR1 stages 1+2): teacher forcing on CoC + trajectory tokens, with DeepSpeed, plus the flow expert.

One process (world size 1 is enough on a CPU; more ranks work with ``torchrun`` / Ray actors setting RANK etc.).
DeepSpeed runs on the gloo backend with torch's AdamW as the client optimizer (DeepSpeed's CPU Adam JIT-compiles
for a minute) and the ZeRO stage from the config. The engine wraps :class:`PolicyModel` (backbone + expert): the
CE losses train the backbone, the flow loss trains only the expert (stop-gradient).

Outputs under ``sft.out``: ``final/`` (and ``step_<n>/`` every ``save_every``) checkpoints written with
``save_pretrained`` (transformers and vLLM load them directly), ``metrics.jsonl`` (one line per log / eval).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rlpost.policy.config import ModelConfig, SFTConfig
from rlpost.policy.data import batches, build_example, collate, pad_id
from rlpost.policy.model import Policy, PolicyModel, new_policy, save_policy


@dataclass
class SFTResult:
    checkpoint: Path
    steps: int
    seconds: float
    history: list[dict] = field(default_factory=list)  # metrics rows (train and eval)


def _single_process_env() -> None:
    """World size 1 without a launcher: the env torch.distributed reads (a launcher's values win)."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _lr_lambda(cfg: SFTConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return f


def ds_config(cfg: SFTConfig, world_size: int = 1) -> dict:
    micro = cfg.batch_size // cfg.grad_accum
    return {
        "train_batch_size": cfg.batch_size * world_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


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


def _gathered(engine, stage: int):
    if stage == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)
    from contextlib import nullcontext

    return nullcontext()


def run_sft(model_cfg: ModelConfig, cfg: SFTConfig, train=None, val=None, policy: Policy | None = None,
            log=print) -> SFTResult:
    """Train a policy on ``train`` scenarios (default: ``cfg.data`` split ``cfg.train_split``); returns the final
    checkpoint path, steps done, wall time and the metric rows."""
    from rlpost.common.runtime import configure_cpu_runtime

    configure_cpu_runtime(threads=cfg.threads)
    _single_process_env()
    t_start = time.time()
    if train is None or val is None:
        from rlpost.scenarios.schema import read_scenarios

        train = train if train is not None else read_scenarios(cfg.data, cfg.train_split)
        val = val if val is not None else read_scenarios(cfg.data, cfg.val_split)
    if cfg.max_train_scenarios:
        train = train[: cfg.max_train_scenarios]
    if not train:
        raise ValueError(f"sft.data: no training scenarios in {cfg.data} (split {cfg.train_split!r})")
    policy = policy or new_policy(model_cfg, [s.coc_trace for s in train])
    tok = policy.tokenizer
    train_ex = [build_example(policy, s, cfg.zero_curvature_below) for s in train]
    val_ex = [build_example(policy, s, cfg.zero_curvature_below) for s in val[: cfg.eval_scenarios]]
    pad = pad_id(policy)
    lengths = [len(e.input_ids) for e in train_ex]
    log(f"sft: {len(train_ex)} train / {len(val_ex)} val examples, tokens/seq mean {np.mean(lengths):.0f} "
        f"max {max(lengths)}, vocab {tok.vocab_size}, backbone {sum(p.numel() for p in policy.backbone.parameters()):,}"
        f" params, expert {sum(p.numel() for p in policy.expert.parameters()) if policy.expert else 0:,}")

    import deepspeed

    from rlpost.common.runtime import init_deepspeed_distributed

    init_deepspeed_distributed("gloo")
    torch.manual_seed(cfg.seed)
    module = PolicyModel(policy.backbone, policy.expert, cfg.trace_weight, cfg.traj_weight,
                         model_cfg.expert.loss_weight, model_cfg.expert.time_beta)
    decay = [p for n, p in module.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in module.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds_config(cfg, world))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics_file = (out / "metrics.jsonl").open("a")
    history: list[dict] = []

    def record(row: dict) -> None:
        history.append(row)
        metrics_file.write(json.dumps(row) + "\n")
        metrics_file.flush()

    def save(name: str) -> Path:
        with _gathered(engine, cfg.zero_stage):
            m = engine.module
            return save_policy(out / name, m.backbone, tok, model_cfg, m.expert, policy.rules)

    micro = cfg.batch_size // cfg.grad_accum
    stream = batches(train_ex, micro, cfg.seed, pad)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="sft", dynamic_ncols=True)
    engine.train()
    step, tokens, t_train = 0, 0, time.time()
    running: dict[str, float] = {}
    deadline = t_start + 60 * cfg.max_minutes if cfg.max_minutes else None
    while step < cfg.steps:
        for _ in range(cfg.grad_accum):
            batch = next(stream)
            res = engine(**batch)
            engine.backward(res["loss"])
            engine.step()
            tokens += int(batch["attention_mask"].sum())
            for k, v in res.items():
                v = float(v.detach())
                running[k] = 0.9 * running.get(k, v) + 0.1 * v
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()} | {"tok/s": f"{tokens / (time.time() - t_train):.0f}"})
        if step % 25 == 0 or step == 1:
            record({"step": step, "time": time.time() - t_start, "lr": scheduler.get_last_lr()[0],
                    "tokens_per_s": tokens / (time.time() - t_train), **{f"train_{k}": v for k, v in running.items()}})
        out_of_time = deadline is not None and time.time() > deadline
        if val_ex and ((cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps or out_of_time):
            with _gathered(engine, cfg.zero_stage):
                row = teacher_forced_eval(engine.module, val_ex, pad)
            record({"step": step, "time": time.time() - t_start, **row})
            log(f"sft step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))
        if cfg.save_every and step % cfg.save_every == 0:
            save(f"step_{step}")
        if out_of_time:
            log(f"sft: time budget of {cfg.max_minutes} min spent at step {step}")
            break
    if bar is not None:
        bar.close()
    ckpt = save("final")
    metrics_file.close()
    seconds = time.time() - t_start
    log(f"sft: {step} steps in {seconds:.0f} s ({tokens / max(time.time() - t_train, 1e-9):.0f} tokens/s); checkpoint {ckpt}")
    return SFTResult(ckpt, step, seconds, history)
