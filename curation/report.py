"""The curation study's report: held-out reward and consistency against generated tokens per arm (95 % intervals
across seeds), final differences paired by seed, each arm's cost, the staleness of offline picks and the freshness
and agreement of amortised scores (markdown + PNG).

Reads finished run folders (``metrics.jsonl``, ``curation/round=*.parquet``); no Ray, no models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from rlpost.common import metric_names as M
from rlpost.curation.analysis import jaccard, rank_correlation
from rlpost.curation.stats import mean_ci, paired_difference

REWARD, CONSISTENCY, ADE = M.held_out(M.REWARD), M.held_out(M.reward_of("coc_consistency")), M.held_out(M.ADE)
# The comparisons the study exists for (a, b): a - b paired by seed.
COMPARISONS = [("online-amortised", "offline"), ("online-full", "offline"), ("online-amortised", "online-full"),
               ("offline", "none"), ("online-amortised", "none"), ("online-full", "none"), ("random", "none")]
AMORTISED_STATS = ["rescored", "agreement_rescored", "agreement_full", "age_mean", "age_p90", "age_max",
                   "from_training"]


def load_run(run_dir: Path) -> dict:
    """One run: its evaluations (each with the cumulative generated tokens, training + curation, when it ran), its
    training rows, curation rounds and final costs."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in rows if 0 <= r["step"] and M.STEP_S in r]
    last = train[-1] if train else {}
    evals = []
    for r in rows:
        if REWARD not in r:
            continue
        at = r if M.STEP_S in r else (last if r["step"] >= 0 else {})
        evals.append({**r, "tokens": at.get(M.TRAIN_TOKENS, 0) + at.get(M.CURATION_TOKENS, 0)})
    rounds: dict[int, list] = {}
    if (run_dir / "curation").exists():
        for row in pq.read_table(run_dir / "curation").to_pylist():
            rounds.setdefault(row["round"], []).append(row)
    train_wall = sum(r[M.STEP_S] for r in train)
    curation_wall = last.get(M.CURATION_WALL_S, 0.0)
    seed = run_dir.name.rpartition("seed")[2]
    return {"seed": int(seed) if seed.isdigit() else run_dir.name, "evals": evals, "train": train, "rounds": rounds,
            "token_share": last.get(M.CURATION_TOKEN_SHARE, 0.0),
            "recuration_share": last.get(M.CURATION_RECURATION_SHARE, 0.0),
            "curation_wall_s": curation_wall, "wall_share": curation_wall / max(train_wall + curation_wall, 1e-9)}


def selection_staleness(offline: dict, online: dict) -> list[dict]:
    """Overlap (Jaccard) of the offline selection (round 0) with an online arm's selection at each later round, and
    the rank correlation of their scores — how stale the one-shot selection becomes as the policy drifts."""
    if 0 not in offline["rounds"]:
        return []
    base = offline["rounds"][0]
    base_sel = [r["scenario_id"] for r in base if r["selected"]]
    base_scores = {r["scenario_id"]: r["score"] for r in base}
    k = len(base_sel)
    return [{"step": round_id,
             "jaccard": jaccard(base_sel, [r["scenario_id"] for r in rows if r["selected"]]),
             "top_jaccard": jaccard(_top(base, k), _top(rows, k)),
             "rank_corr": rank_correlation(base_scores, {r["scenario_id"]: r["score"] for r in rows})}
            for round_id, rows in sorted(online["rounds"].items()) if round_id > 0]


def _top(rows: list[dict], k: int) -> list[str]:
    """The ``k`` highest-scored candidates of a round: a selection's random share (top_plus_random) is redrawn
    every round, so the overlap of selections mixes drift with resampling; the top-k overlap is drift alone."""
    return [r["scenario_id"] for r in sorted(rows, key=lambda r: (-r["score"], r["scenario_id"]))[:k]]


def _fmt(mean: float, half: float, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if np.isfinite(half) else f"{mean:.{digits}f}"


def _paired(a: list[dict], b: list[dict], key: str) -> dict[str, float]:
    """``paired_difference`` of the final ``key`` over the seeds both arms finished (runs carry their seed)."""
    fa = {run["seed"]: v for run, v in zip(a, _finals(a, key))}
    fb = {run["seed"]: v for run, v in zip(b, _finals(b, key))}
    common = sorted(set(fa) & set(fb))
    return paired_difference([fa[s] for s in common], [fb[s] for s in common])


def _finals(seeds: list[dict], key: str) -> list[float]:
    return [run["evals"][-1].get(key, np.nan) if run["evals"] else np.nan for run in seeds]


def verdict(loaded: dict[str, list[dict]]) -> str:
    """One sentence on online vs offline: a difference whose 95 % interval excludes 0, or the power statement."""
    if not {"offline", "online-amortised"} <= set(loaded):
        return "Online vs offline: not in this study."
    d = _paired(loaded["online-amortised"], loaded["offline"], REWARD)
    what = f"online-amortised minus offline final held-out reward = {d['mean']:+.3f}"
    if d["n"] < 2:
        return (f"Online vs offline: not answerable yet: {what} on {d['n']} seed; an interval needs at least 2 "
                "paired seeds.")
    what += f" (95 % CI [{d['lo']:+.3f}, {d['hi']:+.3f}], {d['n']} paired seeds)"
    if d["lo"] > 0 or d["hi"] < 0:
        return f"Online (amortised) curation {'beats' if d['lo'] > 0 else 'trails'} offline: {what}."
    return (f"Online vs offline cannot be separated here: {what}; with this spread this design detects a true "
            f"difference of ±{d['mde']:.3f} or more with 80 % power (two-sided, α = 0.05), not smaller.")


def write_study_report(study_dir: Path, runs: dict[str, list[Path]], audits: list[Path] = (),
                       planned_seeds: int | None = None) -> Path:
    """``runs``: arm name -> run folders (index = seed); ``audits``: online-amortised runs with a full uncharged
    re-score per round; ``planned_seeds``: the study's seeds (an interim report says how many are finished).
    Writes ``report.md`` + ``curves.png`` into study_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = {arm: [load_run(p) for p in paths] for arm, paths in runs.items() if paths}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    done = min((len(seeds) for seeds in loaded.values()), default=0)
    interim = ([f"**Interim report: {done} of {planned_seeds} seeds finished for every arm** (the study resumes with "
                "the same command; finished runs are kept).", ""] if planned_seeds and done < planned_seeds else [])
    lines = ["# Curation study: none / random / offline / online-full / online-amortised", "", *interim,
             f"**Answer.** {verdict(loaded)}", "",
             "Final held-out metrics (mean ± 95 % t-interval across seeds); curation cost as a share of all generated "
             "tokens (re-curation: rounds after the one-off scoring of the pool at step 0) and of wall time.", "",
             "| arm | seeds | reward | consistency | ADE [m] | Δ reward vs start | curation tokens | re-curation "
             "tokens | curation wall |", "|---|---|---|---|---|---|---|---|---|"]
    for arm, seeds in loaded.items():
        start = [run["evals"][0][REWARD] for run in seeds]
        delta = np.subtract(_finals(seeds, REWARD), start)
        share = lambda k, seeds=seeds: f"{100 * np.mean([r[k] for r in seeds]):.1f} %"  # noqa: E731
        lines.append(f"| {arm} | {len(seeds)} | {_fmt(*mean_ci(_finals(seeds, REWARD)))} | "
                     f"{_fmt(*mean_ci(_finals(seeds, CONSISTENCY)))} | {_fmt(*mean_ci(_finals(seeds, ADE)))} | "
                     f"{_fmt(*mean_ci(delta))} | {share('token_share')} | {share('recuration_share')} | "
                     f"{share('wall_share')} |")
        n = min(len(run["evals"]) for run in seeds)
        x = np.mean([[e["tokens"] for e in run["evals"][:n]] for run in seeds], axis=0) / 1e6
        for ax, key in zip(axes, (REWARD, CONSISTENCY)):
            stats = [mean_ci([run["evals"][i].get(key, np.nan) for run in seeds]) for i in range(n)]
            mean, half = np.array([s[0] for s in stats]), np.nan_to_num(np.array([s[1] for s in stats]))
            ax.plot(x, mean, marker="o", label=arm)
            ax.fill_between(x, mean - half, mean + half, alpha=0.15)
    axes[0].set(xlabel="generated tokens, training + curation [M]", ylabel="held-out reward")
    axes[1].set(xlabel="generated tokens, training + curation [M]", ylabel="held-out CoC consistency")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(study_dir / "curves.png", dpi=90)
    plt.close(fig)
    lines += ["", "![held-out reward and consistency against generated tokens (95 % intervals)](curves.png)", "",
              "## Final differences, paired by seed", "",
              "a − b on the same seed (same start, same held-out scenarios and sampling seeds); MDE = the smallest "
              "true difference this design detects with 80 % power.", "",
              "| a − b | metric | n | mean | 95 % CI | MDE |", "|---|---|---|---|---|---|"]
    for a, b in COMPARISONS:
        if a in loaded and b in loaded:
            for label, key in (("reward", REWARD), ("consistency", CONSISTENCY)):
                d = _paired(loaded[a], loaded[b], key)
                lines.append(f"| {a} − {b} | {label} | {d['n']} | {d['mean']:+.3f} | [{d['lo']:+.3f}, {d['hi']:+.3f}] "
                             f"| {d['mde']:.3f} |")
    lines += _staleness_section(loaded) + _amortised_section(loaded.get("online-amortised", []), "")
    if audits:
        lines += _amortised_section([load_run(p) for p in audits], f" (audit runs: {len(audits)} seed(s) repeated "
                                    "with a full uncharged re-score per round)")
    path = study_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _staleness_section(loaded: dict) -> list[str]:
    if "offline" not in loaded:
        return []
    out = ["", "## How stale do the offline picks get?", "",
           "The offline selection (scored once, by the SFT policy) against each online arm's selection and scores at "
           "its later rounds, same seed (mean over seeds). Selections are half top-scored, half random (redrawn each "
           "round), so the top-k overlap (k = selection size) isolates the drift of the scores.", "",
           "| online arm | step | Jaccard of selections | Jaccard of top-k | Spearman of scores |",
           "|---|---|---|---|---|"]
    for arm in ("online-full", "online-amortised"):
        per_step: dict[int, list] = {}
        offline = {run["seed"]: run for run in loaded["offline"]}
        for on in loaded.get(arm, []):
            for row in selection_staleness(offline[on["seed"]], on) if on["seed"] in offline else []:
                per_step.setdefault(row["step"], []).append(row)
        for step, rows in sorted(per_step.items()):
            cells = [_fmt(*mean_ci([r[k] for r in rows]), 2) for k in ("jaccard", "top_jaccard", "rank_corr")]
            out.append(f"| {arm} | {step} | " + " | ".join(cells) + " |")
    return out


def _amortised_section(seeds: list[dict], title: str) -> list[str]:
    per_round: dict[int, dict[str, list]] = {}
    for run in seeds:
        for row in run["train"]:
            if M.curation_stat("rescored") in row:
                stats = per_round.setdefault(row[M.CURATION_ROUND], {k: [] for k in AMORTISED_STATS})
                for k in AMORTISED_STATS:
                    stats[k].append(row.get(M.curation_stat(k), np.nan))
    if not per_round:
        return []
    out = ["", f"## Amortised scores: freshness and agreement{title}", "",
           "Per round (mean over seeds): candidates re-scored within the budget, Spearman agreement of their amortised "
           "scores with the fresh re-score, agreement of the whole table with a full re-score (audit runs only), and "
           "the age [steps] of the scores the selection used and the share of them that came from training steps.", "",
           "| round | " + " | ".join(AMORTISED_STATS) + " |", "|---" * (len(AMORTISED_STATS) + 1) + "|"]
    for round_id, stats in sorted(per_round.items()):
        cells = [f"{np.nanmean(v):.2f}" if np.isfinite(v).any() else "–" for v in map(np.asarray, stats.values())]
        out.append(f"| {round_id} | " + " | ".join(cells) + " |")
    return out
