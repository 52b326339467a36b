"""Weight sync, object store vs stream, side by side in one run (issue #15 parts 4-5).

    python bench/sync.py --sizes 1m,30m --repeats 3            # what the test machine can afford
    python bench/sync.py --sizes 1m,30m,125m,0.5b --repeats 3  # the whole ladder (0.5B: ~2.5 GB fp32 per copy)

For each size a random-init untied Qwen2 (transformers ``Qwen2Config``; 0.5b has Qwen2.5-0.5B's dimensions) is
written as a policy checkpoint and a real ``Cluster`` starts on it: one DeepSpeed learner rank, one vLLM engine,
both Ray actors with one OpenMP thread (the reward worker idles). The two transports then alternate on that
cluster, ``--repeats`` syncs each after one warm-up each, and the table reports the medians of
``actors/sync.py``'s metrics: wall time and its stages (export = gather + pack on the learner; integrity =
checksums on both sides; transfer; load = the engine's in-place load) in ms, and the bytes moved. Streamed
stages overlap, so they need not add up to the wall time. Writes ``bench/results/sync.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

SIZES = {  # name -> Qwen2Config fields (untied)
    "1m": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
               intermediate_size=256, vocab_size=6000),
    "30m": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=6, num_key_value_heads=2,
                intermediate_size=1536, vocab_size=24000),
    "125m": dict(hidden_size=768, num_hidden_layers=9, num_attention_heads=12, num_key_value_heads=4,
                 intermediate_size=3072, vocab_size=32000),
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, vocab_size=151936),
}
KEYS = ["sync_ms", "sync_export_ms", "sync_integrity_ms", "sync_transfer_ms", "sync_load_ms"]


def write_checkpoint(size: str, directory: Path, policy_files: Path) -> tuple[Path, int]:
    """A random-init untied Qwen2 of ``size`` completed into a policy checkpoint; returns (folder, parameters)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlpost.policy.model import copy_policy_files

    torch.manual_seed(0)
    cfg = Qwen2Config(**SIZES[size], tie_word_embeddings=False, max_position_embeddings=2048)
    model = Qwen2ForCausalLM(cfg)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(directory), safe_serialization=True)
    copy_policy_files(policy_files, directory)
    del model
    return directory, n


def bench_transport(size: str, transport: str, checkpoint: Path, redis_url: str, repeats: int, bucket_mb: float,
                    min_free_gib: float) -> dict:
    """``repeats`` syncs (after a warm-up) with ``transport`` on a fresh cluster, so that each transport's peak
    memory per actor is its own; a run stopped by the memory guard or a dead actor is recorded, not raised."""
    from _memory import MemorySampler
    from rlpost.actors.cluster import Cluster
    from rlpost.rl.config import RunConfig
    from rlpost.storage.store import RunState

    cfg = RunConfig(name=f"bench-sync-{size}-{transport}", out=tempfile.mkdtemp(prefix="bench-sync-"),
                    redis_url=redis_url,
                    rewards={"components": [{"name": "trajectory_quality", "in_process": True, "deadline_s": None}]},
                    rollout={"group_size": 2, "num_cpus": 0.5, "kv_cache_gib": 1},
                    learner={"num_ranks": 1, "zero_stage": 1, "num_cpus": 0.5, "micro_batch": 2},
                    trainer={"scenarios_per_step": 1},
                    sync={"bucket_mb": bucket_mb, "verify_probe": False, "timeout_s": 600, "transport": transport})
    runs, out = [], {"load_avg_start": os.getloadavg()[0]}
    sampler = MemorySampler(redis_url, cfg.name, min_free_gib)
    sampler.start()
    t0 = time.perf_counter()
    try:
        with Cluster(cfg, str(checkpoint), redis_url) as cluster:
            RunState(redis_url, cfg.name).update(roles=cluster.where())  # the sampler finds the actors' pids here
            out["start_s"] = time.perf_counter() - t0
            for k in range(repeats + 1):  # the first is a warm-up
                metrics = cluster.sync()
                print(f"[{size}] {transport} #{k}: " + " ".join(f"{key}={metrics[key]:.0f}" for key in KEYS),
                      flush=True)
                if k:
                    runs.append(metrics)
    except KeyboardInterrupt:
        out["error"] = sampler.tripped or "interrupted"
    except Exception as exc:  # noqa: BLE001 - e.g. an engine killed for memory: recorded, the next run goes on
        out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        sampler.stop()
    out["peak_gib"] = {name: round(max(rss, sampler.hwm.get(name, 0)) / 2**30, 2)
                       for name, rss in sorted(sampler.peak.items())}
    if runs:
        out.update(bytes=runs[0]["sync_bytes"], **{key: statistics.median(r[key] for r in runs) for key in KEYS})
    return out


def _first_line(error: str, width: int = 110) -> str:
    line = error.splitlines()[0] if error else "?"
    return line if len(line) <= width else line[: width - 1] + "…"


def table(results: dict, meta: dict) -> str:
    lines = ["# Weight sync: object store vs stream", "",
             f"`{meta['command']}` — {meta['when']}, {meta['machine']}; one learner rank (ZeRO-1), one vLLM engine, "
             f"one OpenMP thread each; bucket {meta['bucket_mb']} MiB; median of {meta['repeats']} syncs after a "
             "warm-up, each transport on a fresh cluster (stream first). Stages in ms (streamed stages overlap: they "
             "need not add up to the wall time). Peak RSS [GiB] of the learner rank, the engine (with its child "
             "processes) and the driver (which holds the object-store path's whole message once).", "",
             "| size | parameters | MB | transport | sync ms | export | integrity | transfer | load | peak GiB "
             "learner / engine / driver |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size, r in results.items():
        for t in ("object_store", "stream"):
            m = r.get(t)
            if m is None:
                continue
            peaks = m.get("peak_gib", {})
            memory = f"{peaks.get('learner:0', 0):.1f} / {peaks.get('rollout:0', 0):.1f} / {peaks.get('driver', 0):.1f}"
            if "sync_ms" not in m:
                failure = _first_line(m.get("error", "?"))
                lines.append(f"| {size} | {r['parameters'] / 1e6:.1f}M | – | {t} | failed: {failure} | | | | "
                             f"| {memory} |")
                continue
            lines.append(f"| {size} | {r['parameters'] / 1e6:.1f}M | {m['bytes'] / 2**20:.1f} | {t} | "
                         f"{m['sync_ms']:.0f} | {m['sync_export_ms']:.0f} | {m['sync_integrity_ms']:.0f} | "
                         f"{m['sync_transfer_ms']:.0f} | {m['sync_load_ms']:.0f} | {memory} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1m,30m", help=f"comma-separated, of {','.join(SIZES)}")
    ap.add_argument("--repeats", type=int, default=3, help="timed syncs per transport and size (after a warm-up)")
    ap.add_argument("--bucket-mb", type=float, default=64.0, help="sync.bucket_mb")
    ap.add_argument("--transports", default="stream,object_store", help="comma-separated, in this order")
    ap.add_argument("--min-free-gib", type=float, default=2.0,
                    help="stop a run when the machine's available memory falls below this (other jobs live)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sync.md"))
    args = ap.parse_args()
    sizes = args.sizes.split(",")
    if unknown := [s for s in sizes if s not in SIZES]:
        raise SystemExit(f"--sizes: unknown {unknown}; choose from {list(SIZES)}")

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rlpost.common.runtime import configure_cpu_runtime, pin_loopback

    configure_cpu_runtime(1)
    pin_loopback()
    import ray

    from rlpost.actors.common import actor_env
    from rlpost.policy.config import ModelConfig
    from rlpost.policy.model import new_policy, save_policy
    from rlpost.storage.local_redis import LocalRedisServer

    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    policy = new_policy(ModelConfig(size="tiny", expert={"enabled": False}))
    policy_files = save_policy(work / "policy", policy.backbone, policy.tokenizer, policy.config)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Earlier runs' sizes and transports are kept: a size that needs a quiet machine can be measured later.
    saved = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    results, runs_meta = saved.get("results", {}), saved.get("runs", [])
    meta = {"command": "python bench/sync.py " + " ".join(sys.argv[1:]),
            "when": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "bucket_mb": args.bucket_mb, "repeats": args.repeats}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=actor_env())
    try:
        with LocalRedisServer() as redis:
            for size in sizes:
                checkpoint, n = write_checkpoint(size, work / size, policy_files)
                entry = results.setdefault(size, {})
                entry["parameters"] = n
                for transport in args.transports.split(","):
                    entry[transport] = {**bench_transport(size, transport, checkpoint, redis.url, args.repeats,
                                                          args.bucket_mb, args.min_free_gib), "when": meta["when"]}
                    out.write_text(table(results, meta))
                    out.with_suffix(".json").write_text(json.dumps({"runs": [*runs_meta, meta], "results": results},
                                                                   indent=1))
    finally:
        ray.shutdown()
    print(out.read_text())

if __name__ == "__main__":
    main()
