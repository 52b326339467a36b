"""Throughput of the built-in rewards, samples/s on one core (a benchmark, not a test).

    OMP_NUM_THREADS=1 python bench/rewards_throughput.py [--samples 4096] [--group 16] [--agents 16] [--repeats 5]

Inputs: synthetic scenarios (``rlpost.rewards.synthetic``) with ``--agents`` neighbours each, ``--group`` rollouts
per scenario. Rollouts are the expert plan plus a perturbation, decoded through the AR1 trajectory tokenizer (as a
policy's trajectory tokens would be):
  expert  the expert plan itself (an upper bound: what a well-trained policy emits);
  smooth  a low-frequency perturbation (a trained policy's plans are smooth) - the headline number;
  rough   i.i.d. per-step noise (0.3 m/s², 0.006 1/m): a worst case for the meta-action segmenter.
Reports the best and the median of ``--repeats`` runs, from wall time and from process CPU time (the CPU time is the
fairer number on a shared machine), and the thread count. Each call runs with the cyclic GC paused, as the framework
calls rewards (``guard.call_reward``). Targets (the issue): trajectory_quality ≥ 100k/s,
coc_consistency ≥ 20k/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from rlpost.common.runtime import configure_cpu_runtime


def _completions(scen, group: int, mode: str, seed: int):
    from rlpost.domain.trajectory import TrajectoryTokenizer
    from rlpost.rewards.types import Completion

    tok = TrajectoryTokenizer.ar1_release()
    rng = np.random.default_rng(seed)
    comps, scens = [], []
    t = np.linspace(0, 1, 64)[:, None]
    for s in scen:
        for g in range(group):
            u = np.array(s.expert_controls)
            if mode == "expert":
                pass  # the expert plan itself, as a well-trained policy would emit it
            elif mode == "smooth":
                amp = rng.normal(0, [0.4, 0.01], (2, 2))  # two sine modes per channel
                u = u + amp[0] * np.sin(np.pi * t) + amp[1] * np.sin(2 * np.pi * t)
            else:
                u = u + rng.normal(0, 1, u.shape) * [0.3, 0.006]
            u = tok.decode(tok.encode(u))
            comps.append(Completion(s.scenario_id, g, s.coc_trace, u, "ok"))
            scens.append(s)
    return comps, scens


def _measure(fn, comps, scens, repeats: int) -> dict[str, float]:
    from rlpost.rewards.guard import paused_gc

    fn(comps[:64], scens[:64])  # warm-up (imports, caches)
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        with paused_gc():  # as the framework calls every reward (guard.call_reward)
            out = fn(comps, scens)
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
        assert len(out) == len(comps)
    n = len(comps)
    return {"best_wall": n / min(wall), "median_wall": n / statistics.median(wall), "best_cpu": n / min(cpu),
            "median_cpu": n / statistics.median(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--group", type=int, default=16)
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_cpu_runtime(threads=args.threads)

    from rlpost.rewards.coc_consistency import coc_consistency
    from rlpost.rewards.compose import RewardPipeline
    from rlpost.rewards.critic import reasoning_critic
    from rlpost.rewards.spec import RewardSpec
    from rlpost.rewards.synthetic import synthetic_scenarios
    from rlpost.rewards.trajectory_quality import trajectory_quality

    n_scen = max(1, args.samples // args.group)
    scen = synthetic_scenarios(n_scen, seed=1, n_agents=args.agents)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, threads={args.threads}, "
          f"{n_scen} scenarios x {args.group} rollouts = {n_scen * args.group} samples, {args.agents} agents each")
    print(f"{'reward':34s} {'inputs':7s} {'best wall/s':>12s} {'median wall/s':>14s} {'best cpu/s':>11s} "
          f"{'median cpu/s':>13s}")
    pipeline = RewardPipeline([RewardSpec(name=n, in_process=True, deadline_s=None)
                               for n in ("trajectory_quality", "coc_consistency", "reasoning_critic")])
    # The same three in guarded worker processes (deadline 60 s, chunks of 1024): adds pickling and a pipe hop.
    # Worker CPU time is not in this process's CPU clock, so only its wall numbers mean anything.
    workers = RewardPipeline([RewardSpec(name=n, deadline_s=60.0, chunk_size=1024)
                              for n in ("trajectory_quality", "coc_consistency", "reasoning_critic")])
    cases = [("trajectory_quality", trajectory_quality), ("coc_consistency", coc_consistency),
             ("reasoning_critic[rubric]", reasoning_critic),
             ("pipeline: all three, in-process", lambda c, s: pipeline.score(c, s)),
             ("pipeline: all three, workers (wall)", lambda c, s: workers.score(c, s))]
    for mode in ("expert", "smooth", "rough"):
        comps, scens = _completions(scen, args.group, mode, seed=2)
        for name, fn in cases:
            r = _measure(fn, comps, scens, args.repeats)
            print(f"{name:34s} {mode:7s} {r['best_wall']:12,.0f} {r['median_wall']:14,.0f} {r['best_cpu']:11,.0f} "
                  f"{r['median_cpu']:13,.0f}", flush=True)
    pipeline.close()
    workers.close()


if __name__ == "__main__":
    main()
