"""The supervised training loop shared by the policy SFT (``rlpost.policy.sft``) and the judge SFT
(``rlpost.judge.sft``): AdamW with weight decay on matrices only, linear warm-up then cosine decay, gradient
clipping, a wall-clock budget, periodic evaluation and checkpoints, and ``metrics.jsonl``.

The module's ``forward(**batch)`` returns a dict of scalar tensors with the optimised ``"loss"`` among them; every
entry is logged as a running mean (``train_<name>``). Two engines run the same loop:

- ``deepspeed``: one process or more (a launcher sets RANK etc.), gloo backend on CPU, ZeRO stage from the
  settings, torch's AdamW as the client optimizer (DeepSpeed's CPU Adam JIT-compiles for a minute);
- ``torch``: plain torch in one process; the judge's default, as one process gains nothing from DeepSpeed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

# Weight of the newest value in the running means shown on the bar and logged as train_<name>.
SMOOTHING = 0.1


@dataclass(frozen=True)
class Optimisation:
    """How the loop optimises; ``batch_size`` is per rank and optimizer step (micro-batch = batch / grad_accum)."""

    steps: int
    batch_size: int
    grad_accum: int
    lr: float
    min_lr_ratio: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    max_minutes: float | None  # wall-clock budget: the loop stops early (and saves) when it is spent
    # True: the cosine runs out with whichever of steps / max_minutes ends first, so a time-bounded run still ends
    # at the low learning rate. False: it follows the steps only.
    cosine_follows_budget: bool
    engine: Literal["deepspeed", "torch"]
    zero_stage: int


@dataclass
class Supervised:
    """What the loop did: optimizer steps, its wall time, trained tokens, the metric rows and the final folder."""

    steps: int
    seconds: float
    tokens: int
    history: list[dict]
    checkpoint: Path


def train_supervised(module: nn.Module, batches: Iterator[dict], opt: Optimisation, out: Path,
                     save: Callable[[nn.Module, Path], Path], evaluate: Callable[[nn.Module, bool], dict] | None,
                     eval_every: int, save_every: int = 0, log_every: int = 25, started: float | None = None,
                     name: str = "sft", progress: bool = False, log=print) -> Supervised:
    """Train ``module`` on ``batches`` (an endless iterator of micro-batches) for ``opt.steps`` optimizer steps or
    until ``opt.max_minutes`` after ``started`` (default: now) are spent.

    evaluate(module, last) -> flat metric row: every ``eval_every`` steps (0: never) and once after the last step
    (``last`` True). save(module, folder) -> checkpoint folder: ``out/step_<n>`` every ``save_every`` steps (0:
    never) and ``out/final`` at the end. Both get the full parameters on every rank (ZeRO-3 gathers them).
    """
    t0 = time.time() if started is None else started
    engine, scheduler = _engine(module, opt, t0)
    out.mkdir(parents=True, exist_ok=True)
    metrics = _Metrics(out / "metrics.jsonl", t0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=opt.steps, desc=name, dynamic_ncols=True)
    deadline = t0 + 60 * opt.max_minutes if opt.max_minutes else None
    engine.train()
    step, tokens, t_train = 0, 0, time.time()
    running: dict[str, float] = {}
    while step < opt.steps:
        for _ in range(opt.grad_accum):
            batch = next(batches)
            res = engine(**batch)
            engine.backward(res["loss"])
            engine.step()
            tokens += int(batch["attention_mask"].sum())
            for k, v in res.items():
                v = float(v.detach())
                running[k] = (1 - SMOOTHING) * running.get(k, v) + SMOOTHING * v
        step += 1
        rate = tokens / (time.time() - t_train)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()} | {"tok/s": f"{rate:.0f}"})
        if step % log_every == 0 or step == 1:
            metrics.record(step, {"lr": scheduler.get_last_lr()[0], "tokens_per_s": rate,
                                  **{f"train_{k}": v for k, v in running.items()}})
        out_of_time = deadline is not None and time.time() > deadline
        if evaluate is not None and eval_every and step % eval_every == 0 and step < opt.steps and not out_of_time:
            _evaluate(engine, opt, evaluate, False, step, metrics, name, log)
        if save_every and step % save_every == 0:
            with _gathered(engine, opt):
                save(engine.module, out / f"step_{step}")
        if out_of_time:
            log(f"{name}: time budget of {opt.max_minutes} min spent at step {step}")
            break
    if bar is not None:
        bar.close()
    seconds = time.time() - t_train
    if evaluate is not None:
        _evaluate(engine, opt, evaluate, True, step, metrics, name, log)
    with _gathered(engine, opt):
        checkpoint = save(engine.module, out / "final")
    metrics.close()
    return Supervised(step, seconds, tokens, metrics.history, checkpoint)


def _evaluate(engine, opt: Optimisation, evaluate, last: bool, step: int, metrics: _Metrics, name: str, log):
    with _gathered(engine, opt):
        row = evaluate(engine.module, last)
    engine.train()  # evaluations may switch the module to eval mode
    metrics.record(step, row)
    log(f"{name} step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()))


class _Metrics:
    """``metrics.jsonl`` (appended, flushed per row) and the same rows in memory."""

    def __init__(self, path: Path, t0: float):
        self.file, self.t0, self.history = path.open("a"), t0, []

    def record(self, step: int, values: dict) -> None:
        row = {"step": step, "time": time.time() - self.t0, **values}
        self.history.append(row)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _engine(module: nn.Module, opt: Optimisation, t0: float):
    """The training engine (``engine(**batch)``, ``backward``, ``step``, ``train``, ``module``) and its scheduler."""
    decay = [p for p in module.parameters() if p.ndim >= 2]
    no_decay = [p for p in module.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": opt.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=opt.lr, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(opt, t0))
    if opt.engine == "torch":
        return _TorchEngine(module, optimizer, scheduler, opt), scheduler
    import deepspeed

    from rlpost.common.runtime import init_deepspeed_distributed

    _single_process_env()
    init_deepspeed_distributed("gloo")
    engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler,
                                           config=ds_config(opt, int(os.environ["WORLD_SIZE"])))
    return engine, scheduler


def _lr_factor(opt: Optimisation, t0: float):
    """Linear warm-up, then cosine decay from 1 to ``min_lr_ratio`` (of ``lr``) over the rest of the budget."""
    def factor(step: int) -> float:
        if step < opt.warmup_steps:
            return (step + 1) / opt.warmup_steps
        p = (step - opt.warmup_steps) / max(1, opt.steps - opt.warmup_steps)
        if opt.cosine_follows_budget and opt.max_minutes:
            p = max(p, (time.time() - t0) / (60 * opt.max_minutes))
        p = min(1.0, p)
        return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return factor


def ds_config(opt: Optimisation, world_size: int) -> dict:
    return {
        "train_batch_size": opt.batch_size * world_size,
        "train_micro_batch_size_per_gpu": opt.batch_size // opt.grad_accum,
        "gradient_accumulation_steps": opt.grad_accum,
        "gradient_clipping": opt.grad_clip,
        "zero_optimization": {"stage": opt.zero_stage},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


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


def _gathered(engine, opt: Optimisation):
    """The full parameters on every rank for the duration (ZeRO-3 partitions them; other stages keep them)."""
    if opt.engine == "deepspeed" and opt.zero_stage == 3:
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None)
    return nullcontext()


class _TorchEngine:
    """The DeepSpeed engine's calls in plain torch for one process: no distributed start, and none of DeepSpeed's
    JIT-built ops to wait for. Accumulates ``grad_accum`` micro-batches per optimizer step, as DeepSpeed does."""

    def __init__(self, module: nn.Module, optimizer, scheduler, opt: Optimisation):
        self.module, self.optimizer, self.scheduler, self.opt = module, optimizer, scheduler, opt
        self.micro_steps = 0

    def __call__(self, **batch):
        return self.module(**batch)

    def train(self):
        self.module.train()

    def backward(self, loss):
        (loss / self.opt.grad_accum).backward()

    def step(self):
        self.micro_steps += 1
        if self.micro_steps % self.opt.grad_accum:
            return
        torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.opt.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
