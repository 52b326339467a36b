"""The pure parts of the scale ladder (``bench/scale.py``): rung shapes and their exact parameter counts, the FLOP
formulas, the log-log slope fit and its extrapolation, the sync metrics by name, and the merge of a new
invocation's runs into the results file. No torch, Ray or vLLM here (tests/unit/test_bench_scale.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Rung:
    """A random-init Qwen2 of the ladder. Qwen2 has q/k/v biases, no o bias, a SwiGLU MLP (gate, up, down) and two
    RMSNorms per layer; every rung ties its head to the embedding (as Qwen2.5 up to 3B does)."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def qwen2_config(self) -> dict:
        """Keyword arguments of ``transformers.Qwen2Config`` for this rung (context and RoPE as Qwen2.5)."""
        return {"hidden_size": self.hidden, "num_hidden_layers": self.layers, "num_attention_heads": self.heads,
                "num_key_value_heads": self.kv_heads, "intermediate_size": self.intermediate,
                "vocab_size": self.vocab, "tie_word_embeddings": self.tied, "max_position_embeddings": 32768,
                "rope_theta": 1_000_000.0, "rms_norm_eps": 1e-6, "use_sliding_window": False,
                "initializer_range": 0.02, "hidden_act": "silu"}


# ~1M, ~6M, ~30M, ~125M, and Qwen2.5-0.5B's exact shape. The small rungs' vocabularies are the policy
# tokenizer rounded up (the 1M rung's 2048 rows hold it); a 151936-row embedding would be 9.7M parameters at
# width 64. head_dim is 32 or 64: vLLM's CPU attention refuses 16.
RUNGS: dict[str, Rung] = {r.name: r for r in (
    Rung("1M", hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384, vocab=2048),
    Rung("6M", hidden=256, layers=6, heads=4, kv_heads=2, intermediate=768, vocab=4096),
    Rung("30M", hidden=512, layers=8, heads=8, kv_heads=2, intermediate=1664, vocab=8192),
    Rung("125M", hidden=768, layers=12, heads=12, kv_heads=2, intermediate=3072, vocab=32768),
    Rung("0.5B", hidden=896, layers=24, heads=14, kv_heads=2, intermediate=4864, vocab=151936),
)}
# The extrapolation target (Qwen2.5-7B's shape: untied head).
QWEN25_7B = Rung("7B", hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064, tied=False)
# The rungs the ZeRO matrix runs at (the two largest).
MATRIX_RUNGS = ("125M", "0.5B")
ZERO_STAGES = (1, 2, 3)
RANK_COUNTS = (1, 2)


def param_count(rung: Rung) -> dict[str, int]:
    """Exact parameter count of ``Qwen2ForCausalLM(rung)`` from its shape (no weights built): total, embedding
    (the V x H matrix, once when tied), non_embedding (everything else, an untied head included)."""
    h, hd = rung.hidden, rung.head_dim
    q = h * rung.heads * hd + rung.heads * hd
    kv = 2 * (h * rung.kv_heads * hd + rung.kv_heads * hd)
    o = rung.heads * hd * h
    mlp = 3 * h * rung.intermediate
    layer = q + kv + o + mlp + 2 * h
    embedding = rung.vocab * h
    head = 0 if rung.tied else rung.vocab * h
    total = embedding + head + rung.layers * layer + h
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def learner_flops(n_params: int, tokens: int) -> float:
    """FLOPs of one learner step: 6·N·T (forward 2·N·T + backward 4·N·T), N the parameters that take part in a
    matmul per token (all of them for a tied model: the embedding matrix is the LM head), T the tokens the learner
    processes (prompt + completion). Attention's sequence-length term (12·layers·S·H per token, under 10 % at
    these lengths) and the padding are left out."""
    return 6.0 * n_params * tokens


def generation_flops(n_params: int, tokens: int) -> float:
    """FLOPs of a forward pass over ``tokens`` (prefill and decode alike): 2·N·T."""
    return 2.0 * n_params * tokens


def matmul_flops(m: int, k: int, n: int) -> float:
    """FLOPs of an (m x k) @ (k x n) product: 2·m·k·n."""
    return 2.0 * m * k * n


@dataclass(frozen=True)
class Fit:
    """cost ≈ exp(intercept) · N^slope, least squares on log cost vs log N; r2 in log space."""

    slope: float
    intercept: float
    r2: float
    n_points: int

    def predict(self, n: float) -> float:
        return math.exp(self.intercept) * n ** self.slope


def fit_loglog(xs: list[float], ys: list[float]) -> Fit | None:
    """The log-log least-squares line through the positive (x, y) pairs; None with fewer than two."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    n = len(pts)
    mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = sum((p[1] - (intercept + slope * p[0])) ** 2 for p in pts)
    ss_tot = sum((p[1] - my) ** 2 for p in pts)
    return Fit(slope, intercept, 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0, n)


def fit_linear(xs: list[float], ys: list[float]) -> tuple[float, float] | None:
    """(intercept, slope) of the least-squares line y = intercept + slope·x through the pairs with a y; None with
    fewer than two distinct x. Memory is a fixed base plus bytes per parameter, which a power law fitted on
    small rungs (where the base dominates) would extrapolate far too low."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys) if y is not None]
    if len({p[0] for p in pts}) < 2:
        return None
    n = len(pts)
    mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)
    return my - slope * mx, slope


# Sync metrics. Today the loop logs `time/sync_s` (the driver's wall time of the whole sync: export, the message
# through the driver and the object store, the engine's checksum + load, the probe if on) and the engine's
# `sync_ms` (its checksum + load). A split sync's metrics are picked up by name, whatever else they are called:
# any scalar named `sync/<part>...`, `time/sync/<part>...`, `time/sync_<part>...` or `sync_<part>...` (other than
# the ones above and sync_bytes / sync_probe_gap), in seconds when it ends in `_s`, milliseconds in `_ms`;
# <part> containing export / integrity|checksum|verify / transfer / load is shown in that column.
SYNC_KNOWN = {"time/sync_s", "sync_ms", "sync_bytes", "sync_probe_gap"}
SYNC_PARTS = {"export": ("export",), "integrity": ("integrity", "checksum", "verify"), "transfer": ("transfer",),
              "load": ("load",)}


def sync_split(row: dict) -> dict[str, float]:
    """The split sync timings of one metrics row, in seconds, keyed by their metric names."""
    out = {}
    for key, value in row.items():
        if key in SYNC_KNOWN or not isinstance(value, (int, float)):
            continue
        if not (key.startswith(("sync/", "time/sync/", "time/sync_")) or key.startswith("sync_")):
            continue
        if key.endswith("_ms"):
            out[key] = value / 1000.0
        elif key.endswith("_s"):
            out[key] = float(value)
    return out


def sync_part(name: str) -> str | None:
    """Which of export / integrity / transfer / load a split-sync metric measures (None: another part)."""
    low = name.lower()
    return next((part for part, words in SYNC_PARTS.items() if any(w in low for w in words)), None)


def run_key(rung: str, zero_stage: int, ranks: int) -> str:
    return f"{rung}/zero{zero_stage}/ranks{ranks}"


def planned_runs(rungs: list[str], zero_matrix: bool) -> list[tuple[str, int, int]]:
    """(rung, ZeRO stage, ranks) of an invocation: each rung with ZeRO-1 on one rank (the ladder), then, with
    ``zero_matrix``, ZeRO 1/2/3 x 1 and 2 ranks at those of ``rungs`` in MATRIX_RUNGS."""
    runs = [(r, 1, 1) for r in rungs]
    if zero_matrix:
        runs += [(r, z, k) for r in rungs if r in MATRIX_RUNGS for z in ZERO_STAGES for k in RANK_COUNTS
                 if (z, k) != (1, 1)]
    return runs


def all_planned() -> list[str]:
    return [run_key(*r) for r in planned_runs(list(RUNGS), True)]


def merge(existing: dict, new_runs: dict[str, dict]) -> dict:
    """``existing`` results with ``new_runs`` (key -> record) put in over the same keys, in the ladder's order;
    ``missing`` lists the planned runs still absent (the file is partial while it is not empty); the invocations
    are kept as they are."""
    runs = {**existing.get("runs", {}), **new_runs}
    order = {k: i for i, k in enumerate(all_planned())}
    runs = dict(sorted(runs.items(), key=lambda kv: order.get(kv[0], len(order))))
    return {"runs": runs, "invocations": list(existing.get("invocations", [])),
            "missing": [k for k in all_planned() if k not in runs]}


def rung_table() -> list[dict]:
    """Every rung's shape and parameter counts (the ladder's first table)."""
    return [{**asdict(r), "head_dim": r.head_dim, **param_count(r)} for r in [*RUNGS.values(), QWEN25_7B]]
