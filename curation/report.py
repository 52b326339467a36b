"""The curation study's report: held-out curves per schedule, cost share, offline staleness (markdown + PNG).

Reads finished run folders (``metrics.jsonl``, ``curation/round=*.parquet``); no Ray, no models.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from rlpost.common import metric_names as M
from rlpost.curation.analysis import jaccard, rank_correlation


def load_run(run_dir: Path) -> dict:
    """Eval curve, training tokens, wall time and curation rounds of one run."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if 0 <= r["step"] and M.STEP_S in r]
    evals = [r for r in rows if M.held_out(M.REWARD) in r]
    rounds = {}
    if (run_dir / "curation").exists():
        for row in pq.read_table(run_dir / "curation").to_pylist():
            rounds.setdefault(row["round"], []).append(row)
    wall = np.cumsum([r[M.STEP_S] for r in train]).tolist()
    last = train[-1] if train else {}
    return {"evals": evals, "train": train, "rounds": rounds, "wall": wall,
            "curation_wall_s": last.get(M.CURATION_WALL_S, 0.0), "curation_tokens": last.get(M.CURATION_TOKENS, 0),
            "token_share": last.get(M.CURATION_TOKEN_SHARE, 0.0)}


def offline_staleness(offline: dict, online: dict) -> list[dict]:
    """Overlap (Jaccard) and rank correlation of the offline selection (round 0) with what the online arm picked
    and scored at each later round — how stale the one-shot selection has become as the policy drifted."""
    if 0 not in offline["rounds"]:
        return []
    base = offline["rounds"][0]
    base_sel = [r["scenario_id"] for r in base if r["selected"]]
    base_scores = {r["scenario_id"]: r["score"] for r in base}
    out = []
    for round_id in sorted(online["rounds"]):
        rows = online["rounds"][round_id]
        out.append({"step": round_id,
                    "jaccard": jaccard(base_sel, [r["scenario_id"] for r in rows if r["selected"]]),
                    "rank_corr": rank_correlation(base_scores, {r["scenario_id"]: r["score"] for r in rows})})
    return out


def write_study_report(study_dir: Path, runs: dict[str, list[Path]]) -> Path:
    """``runs``: arm name -> run folders (one per seed). Writes ``report.md`` + ``curves.png`` into study_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = {arm: [load_run(p) for p in paths] for arm, paths in runs.items()}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    table = ["| arm | seeds | held-out reward (final) | ADE (final) | Δ reward vs start | curation wall s "
             "| curation token share |",
             "|---|---|---|---|---|---|---|"]
    for arm, seeds in loaded.items():
        finals = defaultdict(list)
        curves = defaultdict(list)
        for run in seeds:
            if not run["evals"]:
                continue
            first, last = run["evals"][0], run["evals"][-1]
            finals["reward"].append(last[M.held_out(M.REWARD)])
            finals["ade"].append(last.get(M.held_out(M.ADE), np.nan))
            finals["delta"].append(last[M.held_out(M.REWARD)] - first[M.held_out(M.REWARD)])
            finals["cwall"].append(run["curation_wall_s"])
            finals["share"].append(run["token_share"])
            steps = [max(r["step"], 0) for r in run["evals"]]
            wall = [0.0] + run["wall"]
            curves["wall"].append([wall[min(s, len(wall) - 1)] + run["curation_wall_s"] * s / max(len(run["wall"]), 1)
                                   for s in steps])
            curves["reward"].append([r[M.held_out(M.REWARD)] for r in run["evals"]])
            curves["ade"].append([r.get(M.held_out(M.ADE), np.nan) for r in run["evals"]])
            curves["steps"].append(steps)
        if not finals:
            continue
        ms = lambda k, finals=finals: f"{np.nanmean(finals[k]):.3f} ± {np.nanstd(finals[k]):.3f}"  # noqa: E731
        table.append(f"| {arm} | {len(finals['reward'])} | {ms('reward')} | {ms('ade')} | {ms('delta')} | "
                     f"{np.mean(finals['cwall']):.1f} | {np.mean(finals['share']):.3f} |")
        n = min(len(c) for c in curves["reward"])
        mean = lambda k, n=n, curves=curves: np.nanmean([c[:n] for c in curves[k]], axis=0)  # noqa: E731
        axes[0].plot(mean("wall"), mean("reward"), marker="o", label=arm)
        axes[1].plot(curves["steps"][0][:n], mean("reward"), marker="o", label=arm)
        axes[2].plot(curves["steps"][0][:n], mean("ade"), marker="o", label=arm)
    axes[0].set(xlabel="wall time incl. curation [s]", ylabel="held-out reward")
    axes[1].set(xlabel="training step (equal training tokens)", ylabel="held-out reward")
    axes[2].set(xlabel="training step", ylabel="held-out ADE [m]")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(study_dir / "curves.png", dpi=90)
    plt.close(fig)
    lines = ["# Curation study: none vs random vs offline vs online", "", *table, "", "![curves](curves.png)", ""]
    if "offline" in loaded and "online" in loaded:
        lines += ["## How stale does the offline selection get?", "",
                  "Offline round 0 (scored once with the SFT policy) against the online arm's round at each step "
                  "(same seed):", "", "| seed | step | Jaccard overlap | rank correlation |", "|---|---|---|---|"]
        for seed, (off, on) in enumerate(zip(loaded["offline"], loaded["online"])):
            for row in offline_staleness(off, on):
                lines.append(f"| {seed} | {row['step']} | {row['jaccard']:.2f} | {row['rank_corr']:.2f} |")
    path = study_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
