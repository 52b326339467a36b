"""The rlpost arm of ``bench/grpo_vs_trl.py``: ``rlpost.loop.train.train`` on the shared workload (one process,
one run).

    python bench/_rlpost_arm.py WORKLOAD.json OUT.json --staleness 0|1 [--verify-probe]

Ray actors as the product runs them: one vLLM rollout engine (phase-constrained decoding), one DeepSpeed learner
rank (ZeRO-1, torch AdamW), the reward worker (the composed reward pipeline); one OpenMP thread in every process.
The loop is rlpost's own; the bench only adds a wall-clock stamp to each metrics row (``bench/wall``) so the
period between steps (what throughput is) can be measured, since ``time/step_s`` leaves out the loop's
book-keeping (Parquet, metrics, next launch), during which a staleness-0 generation already runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

T_PROCESS = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("out")
    ap.add_argument("--staleness", type=int, choices=[0, 1], default=1)
    ap.add_argument("--verify-probe", type=int, choices=[0, 1], default=1,
                    help="rlpost's per-sync log-prob probe (on by default in the product)")
    ap.add_argument("--run-dir", default=None, help="keep the run's output folder here (default: a temp dir)")
    args = ap.parse_args()

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    from rlpost.common.runtime import configure_cpu_runtime

    configure_cpu_runtime(1)
    from _workload import Workload, arm_env_report, pool, summarize

    w = Workload.load(args.workload)
    env = arm_env_report()
    scenarios = pool(w)

    import rlpost.loop.train as rt
    from rlpost.common import metric_names as M
    from rlpost.policy.model import load_model_config
    from rlpost.rl.config import RunConfig
    from rlpost.storage.store import MetricsLog

    walls: dict[int, float] = {}

    class StampedMetricsLog(MetricsLog):
        def log(self, step, scalars):
            walls[step] = time.perf_counter()
            super().log(step, {**scalars, "bench/wall": walls[step]})

    rt.MetricsLog = StampedMetricsLog  # a timestamp per metrics row

    # Start-up stages: time the Cluster's own waits until the first step (placement group, learner setup,
    # vLLM engine start) without touching the loop.
    import rlpost.actors.learner as learner_mod
    import rlpost.actors.placement as placement_mod
    import rlpost.actors.rollout as rollout_mod

    stages: dict[str, float] = {}
    plain_wait = rollout_mod.wait

    def timed_wait(refs, what, timeout_s):
        t0 = time.perf_counter()
        try:
            return plain_wait(refs, what, timeout_s)
        finally:
            if 0 not in walls:
                key = what.split(" (")[0]
                stages[key] = stages.get(key, 0.0) + time.perf_counter() - t0

    for module in (placement_mod, learner_mod, rollout_mod):
        module.wait = timed_wait

    run_dir = args.run_dir or tempfile.mkdtemp(prefix="rlpost_bench_")
    cfg = RunConfig.model_validate({
        "name": f"bench_s{args.staleness}_{os.getpid()}", "out": run_dir, "init_checkpoint": w.checkpoint,
        "model": load_model_config(w.checkpoint).model_dump(),
        "data": {"path": w.data, "train_split": w.split},
        "rollout": {"group_size": w.group_size, "temperature": w.temperature, "top_p": w.top_p},
        "learner": {"lr": w.lr, "weight_decay": w.weight_decay, "grad_clip": w.grad_clip, "micro_batch": w.micro_batch,
                    "loss": {"name": "ppo_clip", "eps_low": w.eps_low, "eps_high": w.eps_high, "agg": "token_mean",
                             "kl_coef": 0.0},
                    "advantage": {"name": "grpo", "unbiased_std": True}},  # TRL scales by the unbiased std too
        "sync": {"verify_probe": bool(args.verify_probe)},
        "rewards": {"components": w.rewards},
        "trainer": {"steps": w.steps, "scenarios_per_step": w.scenarios_per_step, "staleness": args.staleness,
                    "eval_scenarios": 1, "eval_samples": 1, "checkpoint_every": 10**6, "seed": w.seed},
        "curation": {"schedule": "none"},
    })
    held_out = scenarios[:1]  # train() evaluates before/after: keep it to one sample (outside the timed steps)
    t_train = time.perf_counter()
    rt.train(cfg, w.checkpoint, scenarios, held_out, log=lambda *_: None)
    t_end = time.perf_counter()

    metrics_file = Path(run_dir) / "metrics.jsonl"
    rows = {r["step"]: r for r in map(json.loads, metrics_file.read_text().splitlines()) if "step" in r}
    steps = list(range(w.steps))
    ends = [walls[k] for k in steps]
    start = walls.get(-1, t_train)  # the 'before' evaluation row: step 0's generation is launched right after it
    import pyarrow.parquet as pq

    tokens, completions = [], []
    for k in steps:
        table = pq.read_table(_step_file(run_dir, k), columns=["completion_ids"])
        ids = table.column("completion_ids").to_pylist()
        completions.append(len(ids))
        tokens.append(sum(len(x) for x in ids))
    summary = summarize(ends, start, completions, tokens, w.warmup)
    sk = slice(w.warmup, None)

    def mean(key):
        vals = [rows[k].get(key, 0.0) for k in steps][sk]
        return sum(vals) / len(vals)

    parts = {"generate_wait": mean(M.GENERATE_WAIT_S), "score": mean(M.SCORE_S),
             "learn": mean(M.LEARN_S), "sync": mean(M.SYNC_S)}
    step_s = mean(M.STEP_S)
    result = {
        "framework": "rlpost", "staleness": args.staleness, "threads": 1, "verify_probe": bool(args.verify_probe),
        **env, **summary,
        "breakdown_s": {**parts, "curation": mean(M.CURATION_WALL_S) if M.CURATION_WALL_S in rows[steps[-1]] else 0.0,
                        "loop_bookkeeping": summary["step_s_mean"] - step_s, "step_s_loop": step_s},
        "decoded_rate": mean(M.DECODED_RATE), "sync_ms": mean(M.SYNC_MS), "sampler_logp_gap": mean(M.SAMPLER_LOGP_GAP),
        "startup_s": {"process_to_train_call": t_train - T_PROCESS, "stages": stages,
                      "train_call_to_before_eval": walls.get(-1, t_train) - t_train,
                      "to_first_step_end": ends[0] - T_PROCESS, "total": t_end - T_PROCESS},
        "reward_mean": [rows[k].get("reward") for k in steps], "completions_per_step": completions,
        "tokens_per_step_all": tokens, "loadavg_end": os.getloadavg()[0], "run_dir": run_dir,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ("staleness", "step_s_median", "completions_per_s", "tokens_per_s",
                                             "breakdown_s")}))
    if args.run_dir is None:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)


def _step_file(run_dir: str, step: int):
    from rlpost.storage.store import StepFiles

    return StepFiles(os.path.join(run_dir, "rollouts")).path(step)


if __name__ == "__main__":
    main()
