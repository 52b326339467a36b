"""The learner's precision and activation checkpointing, side by side (issue 15, part 5): seconds per update and
peak memory of one ``GRPOLearner`` rank for fp32 / bf16 autocast, each with and without activation checkpointing,
on the scale ladder's random-init Qwen2 rungs (``bench/_scale.py``).

    nice -n 10 .venv/bin/python bench/learner_precision.py --rungs 30M,125M

Each configuration runs in a fresh process (so ``VmHWM``, the kernel's peak RSS, is that configuration's alone):
DeepSpeed ZeRO-1 on one gloo rank, torch's AdamW, one thread; the ladder's step shape (8 sequences of 197 tokens:
a 50-token prompt and 147 completion tokens, micro-batch 2); ``--updates`` timed updates after one warm-up.
Separate processes cannot interleave update by update, so the whole set of configurations is repeated
(``--rounds``) and the median taken, to spread a shared machine's load over all of them.
Writes ``bench/results/learner_precision.{json,md}``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import _vm_hwm  # noqa: E402
from _scale import RUNGS, param_count  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]
SEQUENCES, PROMPT_TOKENS, COMPLETION_TOKENS, MICRO_BATCH = 8, 50, 147, 2


def child(rung_name: str, model_dir: str, precision: str, checkpointing: bool, updates: int) -> dict:
    """One configuration in this process: build the learner, one warm-up update, ``updates`` timed ones."""
    import torch

    from rlpost.common.runtime import configure_cpu_runtime
    from rlpost.rl.config import LearnerConfig
    from rlpost.rl.learner import GRPOLearner, make_train_batch

    configure_cpu_runtime(1)
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(29700 + os.getpid() % 200))
    cfg = LearnerConfig(lr=1e-5, micro_batch=MICRO_BATCH, precision=precision,
                        activation_checkpointing=checkpointing)
    learner = GRPOLearner(model_dir, cfg, per_rank_batch=SEQUENCES, group_size=4)
    vocab = RUNGS[rung_name].vocab
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, vocab, (PROMPT_TOKENS,), generator=g).tolist() for _ in range(SEQUENCES)]
    comps = [torch.randint(0, vocab, (COMPLETION_TOKENS,), generator=g).tolist() for _ in range(SEQUENCES)]
    # Sampler log-probs of a uniform policy: the ratio is far from 1 but finite, which is all the timing needs.
    logps = [[-float(torch.log(torch.tensor(float(vocab))))] * COMPLETION_TOKENS for _ in comps]
    adv = torch.randn(SEQUENCES, generator=g).tolist()
    batch = make_train_batch(prompts, comps, logps, adv, pad_id=0)
    normalizer = float(batch.completion_mask.sum())
    times, losses = [], []
    for i in range(updates + 1):
        t0 = time.perf_counter()
        metrics = learner.update(batch, normalizer)
        if i:
            times.append(time.perf_counter() - t0)
        losses.append(metrics["loss"])
    return {"update_s": times, "loss_first": losses[0], "peak_rss_bytes": _vm_hwm(os.getpid())}


def model_folder(rung_name: str, cache: Path) -> Path:
    """The rung's random-init Qwen2 (weights only: the learner needs no tokenizer), written once."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = cache / "learner_precision" / rung_name
    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(Qwen2Config(**RUNGS[rung_name].qwen2_config())).float()
        tmp = Path(tempfile.mkdtemp(dir=cache))
        model.save_pretrained(str(tmp), safe_serialization=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(folder)
    return folder


def write_markdown(result: dict, path: Path) -> None:
    lines = ["# Learner precision and activation checkpointing (`bench/learner_precision.py`)", "",
             f"One learner rank, DeepSpeed ZeRO-1 over gloo, torch AdamW, one thread; {SEQUENCES} sequences × "
             f"{PROMPT_TOKENS + COMPLETION_TOKENS} tokens per update (micro-batch {MICRO_BATCH}); the median of the "
             "timed updates after a warm-up, each configuration in a fresh process. Invocations (load averages "
             "include other jobs on the machine):", ""]
    for i, inv in enumerate(result["invocations"]):
        lines.append(f"{i}. {inv['started']} on {inv['machine']}: rungs {inv['rungs']}, configurations "
                     f"{inv['configs']}, {inv['updates']} timed update(s) × {inv['rounds']} round(s); load average "
                     f"{inv['loadavg_start']:.2f} → {inv.get('loadavg_end', float('nan')):.2f}")
    lines += ["", "| rung | N | precision | activation ckpt | s / update | vs fp32 | peak RSS GiB | vs fp32 "
              "| invocation |", "|---|---|---|---|---|---|---|---|---|"]
    for rung, rows in result["rungs"].items():
        base = rows.get("fp32/plain")
        for key in sorted(rows, key=lambda k: (k.startswith("bf16"), k.endswith("ckpt"))):
            row, (precision, mode) = rows[key], key.split("/")
            time_ratio = f"{row['update_s'] / base['update_s']:.2f}×" if base else "–"
            mem_ratio = f"{row['peak_rss_gib'] / base['peak_rss_gib']:.2f}×" if base else "–"
            lines.append(
                f"| {rung} | {param_count(RUNGS[rung])['total']:,} | {precision} | {'on' if mode == 'ckpt' else 'off'} "
                f"| {row['update_s']:.2f} | {time_ratio} | {row['peak_rss_gib']:.2f} | {mem_ratio} "
                f"| {row['invocation']} |")
    lines += ["", result.get("verdict", ""), ""]
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rungs", default="30M,125M", help="comma-separated ladder rungs")
    ap.add_argument("--updates", type=int, default=2, help="timed updates per configuration and round")
    ap.add_argument("--rounds", type=int, default=2, help="times the whole set of configurations is repeated")
    ap.add_argument("--configs", default=",".join(f"{p}/{'ckpt' if c else 'plain'}" for p, c in CONFIGS),
                    help="which of precision/plain|ckpt to run (bf16 is ~20x slower on AVX2-only CPUs: run it "
                         "at the small rungs); results merge into the file by rung and configuration")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "rlpost-bench"), help="model folders")
    ap.add_argument("--child", nargs=4, metavar=("RUNG", "MODEL", "PRECISION", "CKPT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        rung, model, precision, ckpt = args.child
        print(json.dumps(child(rung, model, precision, ckpt == "1", args.updates)))
        return
    import platform

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    wanted = args.configs.split(",")
    unknown = set(wanted) - {f"{p}/{'ckpt' if c else 'plain'}" for p, c in CONFIGS}
    if unknown:
        raise SystemExit(f"--configs: unknown {sorted(unknown)}; each is fp32|bf16 / plain|ckpt")
    out_json = RESULTS / "learner_precision.json"
    result = json.loads(out_json.read_text()) if out_json.is_file() else {"rungs": {}, "invocations": []}
    result["invocations"].append({
        "machine": f"{platform.node()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "loadavg_start": os.getloadavg()[0], "updates": args.updates, "rounds": args.rounds, "rungs": args.rungs,
        "configs": args.configs, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for rung in args.rungs.split(","):
        if rung not in RUNGS:
            raise SystemExit(f"--rungs: unknown rung {rung!r}; known: {', '.join(RUNGS)}")
        folder = model_folder(rung, cache)
        samples: dict[str, list] = {}
        for r in range(args.rounds):
            for precision, ckpt in CONFIGS:
                key = f"{precision}/{'ckpt' if ckpt else 'plain'}"
                if key not in wanted:
                    continue
                out = subprocess.run([sys.executable, __file__, "--updates", str(args.updates), "--child", rung,
                                      str(folder), precision, "1" if ckpt else "0"],
                                     env=env, capture_output=True, text=True, check=False)
                if out.returncode:
                    raise SystemExit(f"{rung} {key} failed:\n{out.stderr[-3000:]}")
                samples.setdefault(key, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"{rung} {key} round {r}: {samples[key][-1]['update_s']}", flush=True)
        result["rungs"].setdefault(rung, {}).update({key: {
            "update_s": statistics.median(t for s in runs for t in s["update_s"]),
            "peak_rss_gib": max(s["peak_rss_bytes"] for s in runs) / 2**30,
            "loss_first": runs[0]["loss_first"], "samples": runs,
            "invocation": len(result["invocations"]) - 1} for key, runs in samples.items()})
    result["invocations"][-1]["loadavg_end"] = os.getloadavg()[0]
    speed = {r: rows["bf16/plain"]["update_s"] / rows["fp32/plain"]["update_s"] for r, rows in result["rungs"].items()
             if {"bf16/plain", "fp32/plain"} <= set(rows)}
    slower = all(v > 1 for v in speed.values())
    if speed:
        result["verdict"] = (
            "bf16 autocast takes " + ", ".join(f"{v:.1f}× fp32's time at {r}" for r, v in speed.items())
            + (" here: fp32 stays the default (`learner.precision`)." if slower else
               "; fp32 stays the default until a run shows bf16 costs nothing in accuracy."))
    RESULTS.mkdir(exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1))
    write_markdown(result, RESULTS / "learner_precision.md")
    print((RESULTS / "learner_precision.md").read_text())


if __name__ == "__main__":
    main()
