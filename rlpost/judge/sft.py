"""The project's own small reasoning judge: data (perturbed trace pairs graded by the rubric), training, agreement.

Why. docs/design.md §5.1 grades a generated trace against the ground truth with a large reasoning model; on a CPU
machine no general-purpose instruction LLM is available, so ``rlpost sft --task judge`` distils the deterministic
``rubric`` backend (``rlpost.rewards.rubric``) into a tiny Qwen2 that vLLM serves like any judge model. The
``judge`` backend (``rlpost.judge.critic``) then runs for real on CPU; on a GPU cluster the same backend points at a
real LLM.

Pairs. For each ground-truth scenario (``coc_trace``, decision, factors), :func:`perturb` writes candidate traces
with varied errors, composed by ``rlpost.domain.coc.compose_trace`` with fresh rng seeds (so the wording is always a
paraphrase): an exact paraphrase; a wrong longitudinal decision; a wrong lateral kind; the opposite direction;
both axes wrong; an axis dropped; missing / extra / irrelevant (weather, works) / replaced factors; decision and
factor errors together; another scenario's trace; and garbage (word soup, shuffled or truncated traces, noise,
empty). The label is always the rubric's grade of the final text (an unparseable candidate grades 0), so the
target never disagrees with the teacher whatever a perturbation happens to produce.

Model. A random-init Qwen2 from a size preset (``rlpost.policy.model.build_backbone``) with the policy's tokenizer
pipeline (``PolicyTokenizer``: byte-level BPE on Qwen2's pre-tokenizer, so tokenizers / transformers / vLLM agree),
trained on the trace vocabulary plus the prompt's words. The prompt is::

    <rubric prefix> reference: <ground-truth trace> candidate: <generated trace> grade:

and the completion is one grade token ``0``..``5`` (digits are single tokens in Qwen2's pipeline). Only that
token carries the loss (plus an optional small language-model loss on the prompt). Training is the supervised loop
the policy SFT uses (``rlpost.policy.supervised``: torch AdamW, warm-up + cosine, grad clip; here the cosine follows
whichever of ``steps`` / ``max_minutes`` runs out first), in plain torch by default or through DeepSpeed (gloo,
ZeRO) with ``deepspeed: true``: one process gains nothing from DeepSpeed's data parallelism.
``judge.json`` beside the weights records the prompt template, the grade token ids and the trace budget, so every
server builds the same prompt.

Measured (``rlpost sft --task judge`` defaults: small preset, 1.08M params, batch 32, 4.5 min on one thread of a
shared 2-core VM): 717 steps; on 1,005 held-out pairs from the 201 val references, exact agreement with the rubric
0.700, mean |diff| 0.589, within ±1 0.829; identical through vLLM + the strict parser (0 unparseable outputs).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rlpost.common.errors import UserError
from rlpost.judge.data import (
    JudgePair,
    make_pairs,
    references_from,
    short_rationale,  # the reasoning format's target
)
from rlpost.judge.model import (
    GRADE_TOKENS,
    REASONING_TAIL,
    JudgeLoss,
    JudgePromptEncoder,
    JudgeSpec,
    build_judge_tokenizer,
    collate_judge_batch,
    predict_grades,
    save_judge,
)


class JudgeConfig(BaseModel):
    """`rlpost sft --task judge`: the judge's data, model and training (the ``judge:`` section of a YAML file)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data: str = Field("data/scenarios", description="Parquet scenario dataset whose coc_trace are the references")
    train_split: str = Field("train", description="split whose scenarios give the training references")
    val_split: str = Field("val", description="held-out split: the agreement is measured on its references only")
    out: str = Field(
        "runs/judge", description="output folder: final/ (save_pretrained + judge.json), metrics.jsonl, agreement.json")
    size: Literal["tiny", "small", "base"] = Field("small", description="size preset of the random-init Qwen2 judge")
    init_std: float = Field(0.02, gt=0, description="std of the random init")
    pairs_per_reference: int = Field(
        12, ge=1, description="perturbed candidates per training reference (fresh each epoch seed)")
    val_pairs_per_reference: int = Field(5, ge=1, description="perturbed candidates per held-out reference")
    max_train_references: int | None = Field(
        None, ge=1, description="cap on training references (None = the whole split)")
    max_val_references: int | None = Field(
        None, ge=1, description="cap on held-out references (None = the whole split)")
    max_trace_tokens: int = Field(96, ge=8, description="tokens kept of each trace in the prompt")
    steps: int = Field(3000, ge=1, description="optimizer steps")
    max_minutes: float | None = Field(
        4.5, gt=0, description="wall-clock budget of the training loop; stops early and saves")
    batch_size: int = Field(32, ge=1, description="pairs per optimizer step")
    lr: float = Field(2e-3, gt=0, description="peak AdamW learning rate")
    min_lr_ratio: float = Field(0.05, ge=0, le=1, description="final lr of the cosine decay, as a fraction of lr")
    warmup_steps: int = Field(100, ge=0, description="linear warm-up steps")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip")
    deepspeed: bool = Field(False, description="train through DeepSpeed (gloo, ZeRO `zero_stage`) like the policy SFT; "
                            "off: the same loop in plain torch "
                            "(one process; no JIT-built comm op to wait for)")
    zero_stage: Literal[0, 1, 2, 3] = Field(
        1, description="DeepSpeed ZeRO stage (gloo backend on CPU), with deepspeed: true")
    reasoning_share: float = Field(
        0.3, ge=0, le=1, description="share of training pairs in the reasoning answer "
        "format (prompt ending in 'rationale:', target: the rubric's rationale, ' Grade: N', "
        "end token); the rest in the grade format (one grade token). 0 = grade format only")
    rationale: Literal["short", "full"] = Field(
        "short", description="reasoning-format target: the rubric's "
        "rationale reduced to its behaviour/reasoning levels (short) or whole")
    lm_weight: float = Field(
        0.05, ge=0, description="weight of an auxiliary next-token loss on the prompt (0 = grade only)")
    eval_every: int = Field(500, ge=0, description="steps between held-out agreement checks (0 = only at the end)")
    eval_pairs: int = Field(
        600, ge=1, description="held-out pairs used by the periodic checks (the final one uses all)")
    eval_vllm: bool = Field(True, description="also measure the final agreement through vLLM (the serving path)")
    threads: int = Field(1, ge=1, description="torch/OpenMP threads of the training process")
    seed: int = Field(0, description="data and init seed")
    progress: bool = Field(False, description="tqdm progress bar")


@dataclass
class JudgeResult:
    checkpoint: Path
    steps: int
    seconds: float
    train_seconds: float
    agreement: dict[str, Any]
    history: list[dict] = field(default_factory=list)


def _encode_pairs(enc: JudgePromptEncoder, pairs: Sequence[JudgePair], reasoning_share: float = 0.0,
                  seed: int = 0, rationale: str = "short") -> list[tuple]:
    """Training items: ``(prompt_ids, grade)`` in the grade format, or for a seeded ``reasoning_share`` of the
    pairs ``(prompt_ids, grade, rationale+" Grade: " ids, end id)`` in the reasoning format
    (``model.collate_judge_batch``)."""
    rng = np.random.default_rng(seed + 7)
    out: list[tuple] = []
    for p, u in zip(pairs, rng.random(len(pairs))):
        if u < reasoning_share:
            text = short_rationale(p.rationale) if rationale == "short" else p.rationale
            out.append((enc.encode(p.reference, p.candidate, reasoning=True), p.grade, *enc.answer_ids(text, p.grade)))
        else:
            out.append((enc.encode(p.reference, p.candidate), p.grade))
    return out


def _item_len(item: tuple) -> int:
    return len(item[0]) + 1 + sum(len(x) for x in item[2:])


def agreement(predicted: Sequence[int | None], pairs: Sequence[JudgePair]) -> dict[str, Any]:
    """Exact-match rate and mean |diff| of judge grades against the rubric's (None = unparseable judge output,
    counted as a miss with |diff| = the rubric grade's distance to 0), plus per-grade and per-kind exact rates."""
    n = len(pairs)
    if n == 0:
        return {"n": 0}
    exact, diffs = [], []
    by_grade: dict[int, list[bool]] = {}
    by_kind: dict[str, list[bool]] = {}
    confusion = np.zeros((6, 6), dtype=int)
    for g, p in zip(predicted, pairs):
        ok = g is not None and int(g) == p.grade
        exact.append(ok)
        diffs.append(abs((g if g is not None else 0) - p.grade))
        by_grade.setdefault(p.grade, []).append(ok)
        by_kind.setdefault(p.kind, []).append(ok)
        if g is not None:
            confusion[p.grade, int(g)] += 1
    return {
        "n": n, "exact": float(np.mean(exact)), "mean_abs_diff": float(np.mean(diffs)),
        "within_1": float(np.mean([d <= 1 for d in diffs])),
        "unparseable": int(sum(g is None for g in predicted)),
        "exact_by_rubric_grade": {str(k): round(float(np.mean(v)), 4) for k, v in sorted(by_grade.items())},
        "exact_by_kind": {k: round(float(np.mean(v)), 4) for k, v in sorted(by_kind.items())},
        "confusion_rubric_x_judge": confusion.tolist(),
    }


def grade_histogram(pairs: Sequence[JudgePair]) -> dict[int, int]:
    return dict(sorted(Counter(p.grade for p in pairs).items()))


def run_judge_sft(cfg: JudgeConfig, train=None, val=None, log=print) -> JudgeResult:
    """Train the judge on pairs from ``train`` scenarios, measure agreement with the rubric on pairs from ``val``
    (held-out references), save ``out/final`` and ``out/agreement.json``."""
    import torch

    from rlpost.common.runtime import configure_cpu_runtime
    from rlpost.policy.config import ModelConfig
    from rlpost.policy.model import build_backbone
    from rlpost.policy.supervised import Optimisation, train_supervised
    from rlpost.policy.tokenizer import PAD, TRAJ_END

    configure_cpu_runtime(threads=cfg.threads)
    t0 = time.time()
    if train is None or val is None:
        from rlpost.scenarios.schema import read_scenarios

        train = train if train is not None else read_scenarios(cfg.data, cfg.train_split)
        val = val if val is not None else read_scenarios(cfg.data, cfg.val_split)
    train_refs = references_from(train)[: cfg.max_train_references]
    val_refs = references_from(val)[: cfg.max_val_references]
    if not train_refs or not val_refs:
        raise UserError(f"judge.data: {cfg.data} gives {len(train_refs)} training ({cfg.train_split!r}) / "
                        f"{len(val_refs)} held-out ({cfg.val_split!r}) references; both splits need scenarios")
    train_ids = {r.scenario_id for r in train_refs}
    if any(r.scenario_id in train_ids for r in val_refs):
        raise UserError(f"judge: the held-out references ({cfg.val_split!r}) overlap the training references "
                        f"({cfg.train_split!r}); set judge.train_split and judge.val_split to different splits")
    train_pairs = make_pairs(train_refs, cfg.pairs_per_reference, cfg.seed, train_refs)
    val_pairs = make_pairs(val_refs, cfg.val_pairs_per_reference, cfg.seed + 10_000, val_refs)
    t_data = time.time() - t0

    tok = build_judge_tokenizer([r.trace for r in train_refs])
    spec = JudgeSpec(max_trace_tokens=cfg.max_trace_tokens, grade_ids=tuple(tok.encode(g)[0] for g in GRADE_TOKENS),
                     reasoning_tail=REASONING_TAIL if cfg.reasoning_share > 0 else None,
                     eos_id=tok.id(TRAJ_END) if cfg.reasoning_share > 0 else None)
    assert all(len(tok.encode(g)) == 1 for g in GRADE_TOKENS), "grade tokens must be single tokens"
    enc = JudgePromptEncoder(tok, spec)
    pad = tok.id(PAD)
    train_items = _encode_pairs(enc, train_pairs, cfg.reasoning_share, cfg.seed, cfg.rationale)
    lengths = [_item_len(it) for it in train_items]
    max_len = max(max(lengths), max(len(enc.encode(p.reference, p.candidate)) + 1 for p in val_pairs))
    mcfg = ModelConfig(size=cfg.size, init_std=cfg.init_std, seed=cfg.seed, expert={"enabled": False},
                       max_position_embeddings=max(512, 2 ** math.ceil(math.log2(max_len + 8))))
    backbone = build_backbone(mcfg, tok)
    n_params = sum(p.numel() for p in backbone.parameters())
    log(f"judge: {len(train_refs)} train / {len(val_refs)} held-out references -> {len(train_pairs)} / "
        f"{len(val_pairs)} pairs ({t_data:.1f} s); train grades {grade_histogram(train_pairs)}, held-out grades "
        f"{grade_histogram(val_pairs)}; tokens/pair mean {np.mean(lengths):.0f} max {max(lengths)}; vocab "
        f"{tok.vocab_size}; {cfg.size} Qwen2 {n_params:,} params")

    torch.manual_seed(cfg.seed)
    module = JudgeLoss.module(backbone, spec.grade_ids, cfg.lm_weight)
    opt = Optimisation(steps=cfg.steps, batch_size=cfg.batch_size, grad_accum=1, lr=cfg.lr,
                       min_lr_ratio=cfg.min_lr_ratio, warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
                       grad_clip=cfg.grad_clip, max_minutes=cfg.max_minutes, cosine_follows_budget=True,
                       engine="deepspeed" if cfg.deepspeed else "torch", zero_stage=cfg.zero_stage)
    final: dict[str, Any] = {}

    def evaluate(m, last: bool) -> dict:
        """Agreement on the first ``eval_pairs`` held-out pairs; after the last step on all of them (kept)."""
        pairs = val_pairs if last else val_pairs[: cfg.eval_pairs]
        a = agreement(predict_grades(m.backbone, enc, [(p.reference, p.candidate) for p in pairs], pad), pairs)
        if last:
            final.update(a)
        prefix = "final" if last else "val"
        return {f"{prefix}_exact": a["exact"], f"{prefix}_mean_abs_diff": a["mean_abs_diff"]}

    def save(m, folder: Path) -> Path:
        return save_judge(folder, m.backbone, tok, spec)

    batches = _length_bucketed(train_items, cfg.batch_size, cfg.seed, pad, spec.grade_ids)
    done = train_supervised(module, batches, opt, Path(cfg.out), save, evaluate, cfg.eval_every, log_every=50,
                            name="judge", progress=cfg.progress, log=log)
    final |= {"split": cfg.val_split, "engine": "hf", "references": len(val_refs), "steps": done.steps,
              "train_seconds": round(done.seconds, 1)}
    if cfg.eval_vllm:  # the serving path: the judge backend's engine (vLLM, grade tokens only) + the strict parser
        final["vllm"] = vllm_agreement(done.checkpoint, val_pairs)
        log(f"judge: through vLLM + the strict parser: exact {final['vllm']['exact']:.3f}, mean |diff| "
            f"{final['vllm']['mean_abs_diff']:.3f}, unparseable outputs {final['vllm']['unparseable']}")
    (Path(cfg.out) / "agreement.json").write_text(json.dumps(final, indent=1))
    seconds = time.time() - t0
    log(f"judge: {done.steps} steps in {done.seconds:.0f} s (total {seconds:.0f} s); held-out agreement with the "
        f"rubric on {final['n']} pairs: exact {final['exact']:.3f}, mean |diff| {final['mean_abs_diff']:.3f}, "
        f"within 1 {final['within_1']:.3f}; checkpoint {done.checkpoint}")
    return JudgeResult(done.checkpoint, done.steps, seconds, done.seconds, final, done.history)


def _length_bucketed(items: list[tuple], batch_size: int, seed: int, pad: int, grade_ids):
    """Endless batches of similar lengths (less padding), in a fresh random order every epoch; the last partial
    bucket is left out. ``items`` as ``_encode_pairs`` makes them (grade or reasoning format)."""
    rng = np.random.default_rng(seed)
    order = np.argsort([_item_len(it) for it in items], kind="stable")
    chunks = [order[s:s + batch_size] for s in range(0, len(order) - batch_size + 1, batch_size)]
    while True:
        for j in rng.permutation(len(chunks)):
            yield collate_judge_batch([items[i] for i in chunks[j]], pad, grade_ids)


def vllm_agreement(checkpoint: str | Path, pairs: Sequence[JudgePair]) -> dict[str, Any]:
    """Agreement of the checkpoint served by vLLM (``rlpost.judge.critic.JudgeEngine``) with the rubric."""
    from rlpost.judge.critic import JudgeEngine
    from rlpost.judge.parse import parse_grade

    engine = JudgeEngine(checkpoint)
    texts = engine.complete([(p.reference, p.candidate) for p in pairs])
    out = agreement([parse_grade(t)[0] for t in texts], pairs)
    del engine
    return {k: v for k, v in out.items() if k not in ("exact_by_kind", "confusion_rubric_x_judge")}


class _JudgeFile(BaseModel):
    """The part of a YAML file `rlpost sft --task judge` reads (errors then name ``judge.<field>``)."""

    model_config = ConfigDict(extra="forbid")
    judge: JudgeConfig = Field(default_factory=JudgeConfig)


def load_judge_config(path: str | None, overrides: Sequence[str] = ()) -> JudgeConfig:
    """The ``judge:`` section of a YAML file (optional) + dotted overrides ``judge.steps=200``."""
    from rlpost.common.config import ConfigError, load_config

    for o in overrides:
        if not re.match(r"^judge\.", o):
            raise ConfigError(f"override {o!r}: `rlpost sft --task judge` takes judge.* overrides "
                              f"(e.g. judge.steps=200)")
    return load_config(_JudgeFile, path, list(overrides), sections=("judge",)).judge
