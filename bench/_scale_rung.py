"""One run of the scale ladder (``bench/scale.py`` starts it, one fresh process per run):

    python bench/_scale_rung.py build RUNG CACHE TRACE OUT.json  # the rung's model and policy folders (cached)
    python bench/_scale_rung.py run SPEC.json RESULT.json        # a short GRPO run on Ray; its measurements

``build``: a random-init ``Qwen2ForCausalLM`` of the rung's shape (``bench/_scale.py`` RUNGS, std 0.02, seed 0)
saved with a Qwen-style byte-level BPE tokenizer trained here (Qwen2's split regex, ``<|endoftext|>`` /
``<|im_start|>`` / ``<|im_end|>``, ``Qwen2Tokenizer``) to ``CACHE/models/<rung>``, then the policy folder GRPO
starts from (``CACHE/policies/<rung>``: rlpost's tokenizer extension, no resize since every rung's rows cover
the tokenizer, no SFT, no action expert). Scenarios: a small real SUMO set in ``CACHE/scenarios``.

``run``: ``rlpost.loop.train.train`` with the product's actors (one vLLM engine, DeepSpeed learner ranks over gloo
with torch AdamW, the reward worker, a Redis of its own), one OpenMP thread in every process. A thread samples
every actor's process (pids from the run state in Redis, as ``rlpost status`` shows them) and this driver with
psutil for the peak RSS per role, and stops the run when the machine's available memory falls below the guard.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# tests/: the Qwen-style tokenizer builder the bring-your-own-model tests use (tests/byo_models.py)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from _memory import MemorySampler  # noqa: E402
from _scale import RUNGS, param_count, sync_split  # noqa: E402

# The policy's trajectory tokenisation (rlpost.rl.config.TINY_MODEL's bins and ranges).
NUM_BINS, ACCEL_RANGE, CURVATURE_RANGE = 255, (-4.0, 4.0), (-0.15, 0.15)
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BASE_VOCAB = 1024  # BPE tokens trained on the trace corpus (the rung's rows hold them plus the policy's own)
SCENARIO_NET, SCENARIO_COUNT = "fokr_bs_demo", 64


def scenarios_dir(cache: Path) -> Path:
    return cache / "scenarios"


def policy_dir(cache: Path, rung: str, max_trace_tokens: int) -> Path:
    return cache / "policies" / f"{rung}-trace{max_trace_tokens}"


def ensure_scenarios(cache: Path) -> Path:
    """A small real scenario set (one SUMO network) for every rung: the prompts' lengths are real ones."""
    out = scenarios_dir(cache)
    if not (out / "scenarios.parquet").is_file():
        from rlpost.scenarios.build import build_dataset

        build_dataset(out, SCENARIO_COUNT, [SCENARIO_NET], seed=0, workers=1, progress=False)
    return out


def ensure_tokenizer(cache: Path) -> Path:
    """The Qwen-style base tokenizer every rung shares (tokenizer.json + tokenizer_config.json)."""
    out = cache / "tokenizer"
    if (out / "tokenizer.json").is_file():
        return out
    from byo_models import QWEN_SPLIT, byte_level_bpe

    from rlpost.policy.model import wording_corpus
    from rlpost.scenarios.schema import read_scenarios

    corpus = wording_corpus() + [s.coc_trace for s in read_scenarios(ensure_scenarios(cache))]
    tk = byte_level_bpe(QWEN_SPLIT, QWEN_SPECIALS, BASE_VOCAB, corpus)
    tmp = Path(tempfile.mkdtemp(dir=cache))
    tk.save(str(tmp / "tokenizer.json"))
    (tmp / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "model_max_length": 32768, "add_prefix_space": False,
        "errors": "replace"}, indent=1))
    tmp.rename(out)
    return out


def build(rung_name: str, cache: Path, max_trace_tokens: int) -> dict:
    """The rung's base model folder and its policy folder, each written once (a finished folder is reused)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlpost.policy.config import ModelConfig
    from rlpost.policy.model import new_policy, save_policy

    rung = RUNGS[rung_name]
    want = param_count(rung)["total"]
    tok_dir = ensure_tokenizer(cache)
    model_dir = cache / "models" / rung_name
    if not (model_dir / "model.safetensors").is_file():
        tmp = Path(tempfile.mkdtemp(dir=cache))
        from tokenizers import Tokenizer

        tk = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
        config = Qwen2Config(**rung.qwen2_config(), bos_token_id=None, eos_token_id=tk.token_to_id("<|endoftext|>"),
                             pad_token_id=tk.token_to_id("<|endoftext|>"))
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).float()
        got = sum(p.numel() for p in model.parameters())
        if got != want:
            raise RuntimeError(f"rung {rung_name}: built {got:,} parameters, the shape formula says {want:,}")
        model.save_pretrained(str(tmp), safe_serialization=True)
        del model
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(tok_dir / f, tmp / f)
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(model_dir, ignore_errors=True)
        tmp.rename(model_dir)
    pol_dir = policy_dir(cache, rung_name, max_trace_tokens)
    if not (pol_dir / "rlpost_model.json").is_file():
        cfg = ModelConfig(size=None, path=str(model_dir), max_trace_tokens=max_trace_tokens, num_bins=NUM_BINS,
                          accel_range=ACCEL_RANGE, curvature_range=CURVATURE_RANGE, expert={"enabled": False})
        policy = new_policy(cfg)
        rows = policy.backbone.get_input_embeddings().weight.shape[0]
        if rows != rung.vocab:
            raise RuntimeError(f"rung {rung_name}: the policy tokenizer ({policy.tokenizer.vocab_size} ids) resized "
                               f"the embedding to {rows} rows; raise the rung's vocab above it")
        tmp = Path(tempfile.mkdtemp(dir=cache))
        save_policy(tmp, policy.backbone, policy.tokenizer, cfg, None, policy.rules)
        pol_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(pol_dir, ignore_errors=True)
        tmp.rename(pol_dir)
    from rlpost.policy.tokenizer import PolicyTokenizer

    return {"model_dir": str(model_dir), "policy_dir": str(pol_dir), "params": want,
            "tokenizer_ids": PolicyTokenizer.load(pol_dir).vocab_size}


def run(spec: dict) -> dict:
    """One short GRPO run as ``spec`` says; returns every step's metrics, token counts and the memory peaks."""
    from rlpost.common.runtime import configure_cpu_runtime

    configure_cpu_runtime(1)
    import pyarrow.parquet as pq

    from rlpost.loop.train import train
    from rlpost.policy.model import load_model_config
    from rlpost.rl.config import RunConfig
    from rlpost.scenarios.schema import read_scenarios
    from rlpost.storage.local_redis import LocalRedisServer
    from rlpost.storage.store import StepFiles

    cache = Path(spec["cache"])
    checkpoint = str(policy_dir(cache, spec["rung"], spec["max_trace_tokens"]))
    pool = sorted(read_scenarios(scenarios_dir(cache), "train"), key=lambda s: s.scenario_id)
    held_out = sorted(read_scenarios(scenarios_dir(cache), "val"), key=lambda s: s.scenario_id)[:1]
    run_dir = Path(tempfile.mkdtemp(prefix="run_", dir=cache))
    name = f"scale-{spec['rung']}-z{spec['zero_stage']}-r{spec['ranks']}-{os.getpid()}"
    long = spec["timeout_s"]
    result: dict = {"spec": spec, "ok": False}
    t0 = time.perf_counter()
    with LocalRedisServer() as redis:
        cfg = RunConfig.model_validate({
            "name": name, "out": str(run_dir), "redis_url": redis.url, "init_checkpoint": checkpoint,
            "model": load_model_config(checkpoint).model_dump(),
            "rollout": {"group_size": spec["group_size"], "num_cpus": 0.5, "timeout_s": long,
                        "num_gpus": spec.get("gpus", 0.0), "gpu_memory_utilization": 0.4},
            "learner": {"num_ranks": spec["ranks"], "zero_stage": spec["zero_stage"], "num_cpus": 0.5,
                        "micro_batch": spec["micro_batch"], "lr": 1e-5, "timeout_s": long,
                        "num_gpus": spec.get("gpus", 0.0)},
            "sync": {"verify_probe": spec["probe"], "timeout_s": long, "transport": spec["transport"]},
            "trainer": {"steps": spec["steps"], "scenarios_per_step": spec["scenarios_per_step"], "eval_scenarios": 1,
                        "eval_samples": 1, "checkpoint_every": 10**6, "seed": 0},
            "curation": {"schedule": "none"},
        })
        sampler = MemorySampler(redis.url, name, spec["min_free_gib"])
        sampler.start()
        try:
            train(cfg, checkpoint, pool, held_out, log=print)
            result["ok"] = True
        except KeyboardInterrupt:
            result["error"] = sampler.tripped or "interrupted"
        except Exception as exc:  # noqa: BLE001 - the driver records a failed run and goes on with the next one
            result["error"] = f"{type(exc).__name__}: {str(exc)[:400]}"
        finally:
            sampler.stop()
    result["wall_s"] = time.perf_counter() - t0
    rows = {}
    metrics_file = run_dir / "metrics.jsonl"
    if metrics_file.is_file():
        rows = {r["step"]: r for r in map(json.loads, metrics_file.read_text().splitlines()) if "step" in r}
    steps = []
    files = StepFiles(run_dir / "rollouts")
    for k in range(spec["steps"]):
        if k not in rows or not files.path(k).is_file():
            break
        t = pq.read_table(files.path(k), columns=["prompt_ids", "completion_ids"]).to_pydict()
        r = rows[k]
        steps.append({
            "step": k, "sequences": len(t["prompt_ids"]),
            "prompt_tokens": sum(map(len, t["prompt_ids"])), "completion_tokens": sum(map(len, t["completion_ids"])),
            "step_s": r["time/step_s"], "generate_s": r["time/generate_wait_s"], "score_s": r["time/score_s"],
            "learn_s": r["time/learn_s"], "sync_s": r["time/sync_s"],
            "engine_load_s": r.get("sync_load_ms", r["sync_ms"]) / 1000.0,
            "sync_bytes": r["sync_bytes"], "sync_split": sync_split(r),
            "sampler_logp_gap": r.get("sampler_logp_gap")})
    result.update(steps=steps, rss_peak=sampler.peak, rss_hwm=sampler.hwm, pids=sampler.pids,
                  min_available_gib=None if sampler.min_available is None else sampler.min_available / 2**30)
    shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints of a 0.5B run are gigabytes; the numbers are kept
    return result


def main() -> None:
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    mode = sys.argv[1]
    if mode == "build":
        rung, cache, trace, out = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
        out.write_text(json.dumps(build(rung, cache, trace)))
    elif mode == "run":
        spec = json.loads(Path(sys.argv[2]).read_text())
        Path(sys.argv[3]).write_text(json.dumps(run(spec), indent=1))
    else:
        raise SystemExit(f"mode: build or run, got {mode!r}")


if __name__ == "__main__":
    main()
