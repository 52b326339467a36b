"""The Table-9 report: ablation table beside AR1's numbers, the directional findings checked seed by seed, the
flow-expert table and training curves (markdown + PNG + JSON). Reads summaries and run folders; no models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rlpost.common import metric_names as M

# (claim, metric, from-row, to-row, the paper's direction of to − from: +1 up, −1 down)
FINDINGS = (
    ("the reasoning reward alone raises the reasoning grade", "reasoning", "sft", "reasoning", +1),
    ("the reasoning reward alone lowers consistency (reward hacking in language space)", "consistency", "sft",
     "reasoning", -1),
    ("the reasoning reward alone does not improve ADE (it gets worse)", "token_ade", "sft", "reasoning", +1),
    ("adding the consistency reward raises consistency over reasoning-only", "consistency", "reasoning",
     "reasoning_consistency", +1),
    ("reasoning + consistency ends above SFT in consistency", "consistency", "sft", "reasoning_consistency", +1),
    ("reasoning + consistency improves ADE over SFT", "token_ade", "sft", "reasoning_consistency", -1),
    ("adding the safety reward lowers the collision rate", "collision", "reasoning_consistency",
     "reasoning_consistency_safety", -1),
)
# docs/design.md §5: AR1 Table 9 (0.5B model after CoC SFT); "close encounters %" is the paper's safety column.
PAPER = {
    "sft": {"ade": 2.12, "reasoning": 3.1, "consistency": 0.62, "collision_pct": 6.9},
    "reasoning": {"ade": 2.19, "reasoning": 4.5, "consistency": 0.53, "collision_pct": 5.8},
    "reasoning_consistency": {"ade": 1.92, "reasoning": 4.5, "consistency": 0.85, "collision_pct": 6.2},
    "reasoning_consistency_safety": {"ade": 1.94, "reasoning": 4.4, "consistency": 0.83, "collision_pct": 3.7},
}


PAPER_KEY = {"token_ade": "ade", "reasoning": "reasoning", "consistency": "consistency", "collision": "collision_pct"}


def _values(results: dict, row: str, view: str, metric: str) -> np.ndarray:
    return np.array([s[view].get(metric, np.nan) for s in results.get(row, [])], dtype=float)


def _ms(values: np.ndarray, scale: float = 1.0, digits: int = 3) -> str:
    if values.size == 0 or np.all(np.isnan(values)):
        return "–"
    return f"{np.nanmean(values) * scale:.{digits}f} ± {np.nanstd(values) * scale:.{digits}f}"


def verdict(deltas: np.ndarray, direction: int) -> str:
    """Reproduces: the mean paired change has the paper's sign and every seed agrees; 'direction only': the mean
    agrees but some seed does not; 'does not reproduce': the mean goes the other way (or does not move)."""
    if deltas.size == 0 or np.all(np.isnan(deltas)):
        return "not measured"
    signs = np.sign(deltas) * direction
    if np.nanmean(deltas) * direction <= 0:
        return "does not reproduce"
    return "reproduces" if np.all(signs > 0) else "direction only (seeds disagree)"


def findings(results: dict, view: str = "most_likely") -> list[dict]:
    out = []
    for claim, metric, a, b, direction in FINDINGS:
        if a not in results or b not in results:
            continue
        deltas = _values(results, b, view, metric) - _values(results, a, view, metric)  # paired by seed
        pa, pb = PAPER.get(a, {}).get(PAPER_KEY[metric]), PAPER.get(b, {}).get(PAPER_KEY[metric])
        out.append({"claim": claim, "metric": metric, "from": a, "to": b, "paper": f"{pa} → {pb}",
                    "delta": deltas.tolist(), "verdict": verdict(deltas, direction)})
    return out


def _table(results: dict, arms, view: str) -> list[str]:
    lines = ["| training | ADE token m ↓ | ADE expert m ↓ | reasoning 0–5 ↑ | consistency ↑ | collision % ↓ | "
             "paper: ADE | reasoning | consistency | close enc. % |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, label in [("sft", "SFT"), *[(a.name, a.label) for a in arms]]:
        if key not in results:
            continue
        p = PAPER.get(key)
        paper = (" | ".join(str(p[k]) for k in ("ade", "reasoning", "consistency", "collision_pct")) if p
                 else "– | – | – | –")
        lines.append(f"| {label} | {_ms(_values(results, key, view, 'token_ade'))} | "
                     f"{_ms(_values(results, key, view, 'expert_ade'))} | "
                     f"{_ms(_values(results, key, view, 'reasoning'), digits=2)} | "
                     f"{_ms(_values(results, key, view, 'consistency'))} | "
                     f"{_ms(_values(results, key, view, 'collision'), 100, 1)} | {paper} |")
    return lines


def _expert_table(results: dict, arms) -> list[str]:
    """Token vs expert ADE, before (SFT) and after each arm, with the paired change per seed."""
    lines = ["| policy | expert during RL | token ADE | Δ token vs SFT | expert ADE | Δ expert vs SFT | "
             "expert ADE (mean of K) | Δ (mean of K) |", "|---|---|---|---|---|---|---|---|"]
    sft = {(v, m): _values(results, "sft", v, m) for v in ("most_likely", "mean") for m in ("token_ade", "expert_ade")}
    for key, label, mode in [("sft", "SFT", "–"), *[(a.name, a.label, a.expert) for a in arms]]:
        if key not in results:
            continue
        tok, exp = _values(results, key, "most_likely", "token_ade"), _values(results, key, "most_likely", "expert_ade")
        exp_mean = _values(results, key, "mean", "expert_ade")
        lines.append(f"| {label} | {mode} | {_ms(tok)} | {_ms(tok - sft['most_likely', 'token_ade'])} | {_ms(exp)} | "
                     f"{_ms(exp - sft['most_likely', 'expert_ade'])} | {_ms(exp_mean)} | "
                     f"{_ms(exp_mean - sft['mean', 'expert_ade'])} |")
    return lines


def _expert_answer(results: dict, arms) -> list[str]:
    full = "reasoning_consistency_safety"
    if full not in results or "sft" not in results:
        return []

    def ml(row, metric):
        return _values(results, row, "most_likely", metric)

    lines = [f"- All three rewards, expert frozen: token-decoder ADE changes by "
             f"{_ms(ml(full, 'token_ade') - ml('sft', 'token_ade'))} m, the frozen expert's ADE by "
             f"{_ms(ml(full, 'expert_ade') - ml('sft', 'expert_ade'))} m (paired by seed; negative = better)."]
    for arm in arms:
        if arm.expert != "flow" or arm.name not in results:
            continue
        lines.append(f"- {arm.label}: its expert's ADE differs from the frozen expert's by "
                     f"{_ms(ml(arm.name, 'expert_ade') - ml(full, 'expert_ade'))} m; token ADE differs by "
                     f"{_ms(ml(arm.name, 'token_ade') - ml(full, 'token_ade'))} m (same rewards and seeds: the flow "
                     f"loss cannot reach the backbone, so the token columns must match).")
    return lines


def _trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` finite values at each step (fewer at the start)."""
    return np.array([np.nanmean(values[max(0, i - window + 1): i + 1]) for i in range(len(values))])


def _curves(runs: dict[str, list[Path]], arms, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(M.reward_of("reasoning_critic"), "reasoning critic (0–1)"),
              (M.reward_of("coc_consistency"), "consistency"),
              (M.reward_of("trajectory_quality"), "trajectory quality"), (M.ADE, "sampled ADE@6.4s [m]"),
              (M.EXPERT_FLOW_LOSS, "expert flow loss (flow arms)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.4))
    for color, arm in enumerate(arms):
        curves = []
        for run in runs.get(arm.name, []):
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
            curves.append([r for r in rows if r["step"] >= 0 and M.STEP_S in r])
        n = min((len(c) for c in curves), default=0)
        if not n:
            continue
        for ax, (key, title) in zip(axes, panels):
            values = np.array([[r.get(key, np.nan) for r in c[:n]] for c in curves], dtype=float)
            if np.all(np.isnan(values)):
                continue
            smooth = np.array([_trailing_mean(v, 5) for v in values])
            steps = np.arange(n)
            ax.plot(steps, smooth.mean(0), color=f"C{color}",
                    label=arm.name.replace("_", " + ").replace("reasoning", "reas."))
            ax.fill_between(steps, smooth.min(0), smooth.max(0), color=f"C{color}", alpha=0.12)
            ax.set(title=title, xlabel="GRPO step")
    axes[0].legend(fontsize=6)
    fig.suptitle("training batches, trailing 5-step mean; line = mean over seeds, band = min–max over seeds (arms that "
                 "share rewards and seeds overlap exactly in the first four panels)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _step_seconds(runs: dict[str, list[Path]]) -> list[float]:
    """Every training step's wall time over all runs (from their metrics), however many sessions trained them."""
    out = []
    for paths in runs.values():
        for run in paths:
            rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
            out += [r[M.STEP_S] for r in rows if M.STEP_S in r]
    return out


def write_table9_report(study: Path, results: dict, runs: dict[str, list[Path]], arms, meta: dict) -> Path:
    """Write ``report.md``, ``curves.png`` and ``results.json`` into ``study``; returns the report path."""
    _curves(runs, arms, study / "curves.png")
    steps = _step_seconds(runs)
    meta = {**meta, "grpo_steps": len(steps), "grpo_step_s_mean": round(float(np.mean(steps)), 2) if steps else None,
            "eval_seconds": round(sum(s.get("seconds", 0.0) for rows in results.values() for s in rows))}
    found = findings(results)
    (study / "results.json").write_text(json.dumps({"meta": meta, "results": results, "findings": found}, indent=1))
    k = meta["samples"]
    overrides = " " + " ".join(meta["overrides"]) if meta["overrides"] else ""
    lines = [
        "# Table 9 on the tiny CPU policy: which rewards make RL safe to optimise, and does RL reach the flow expert?",
        "",
        f"`rlpost experiment table9 --seeds {meta['seeds']}`: GRPO from `{meta['checkpoint']}`, {meta['steps']} "
        f"steps × {meta['batch']} samples, lr {meta['lr']:g} (config `{meta['config']}`{overrides}); "
        f"held-out: {meta['eval_scenarios']} val scenarios × K = {k} samples, the same sampling seeds for every "
        f"policy. Mean ± std over {meta['seeds']} seeds (for SFT: over the evaluation seeds alone). "
        f"{meta['grpo_steps']} GRPO steps in all at {meta['grpo_step_s_mean']} s/step; held-out evaluations "
        f"{meta['eval_seconds']} s; on 2 CPU cores.",
        "",
        "Reasoning = the rubric critic's 0–5 grade (the same critic the reasoning reward uses, as in AR1); collision = "
        "ego box overlapping an agent's logged future (AR1's column is close encounters, a looser event); ADE@6.4 s.",
        "",
        f"## Most likely of {k} (AR1's protocol)", "", *_table(results, arms, "most_likely"), "",
        f"## Mean over the {k} samples", "", *_table(results, arms, "mean"), "",
        "## Do the paper's directional findings reproduce?", "",
        "Paired change per seed (to − from, most likely of K); 'reproduces' = the mean moves the paper's way and every "
        "seed agrees.", "", "| finding | from → to | paper | ours: change per seed | verdict |",
        "|---|---|---|---|---|",
    ]
    for f in found:
        lines.append(f"| {f['claim']} | {f['from']} → {f['to']} | {f['paper']} | "
                     f"{', '.join(f'{d:+.3f}' for d in f['delta'])} | **{f['verdict']}** |")
    lines += ["", "## Does RL reach the flow-matching expert?", "",
              "The expert reads the backbone's prefix states through a stop-gradient, so RL never trains it; its "
              "trajectories can only change because the trace and the backbone's features under it changed.", "",
              *_expert_table(results, arms), "", *_expert_answer(results, arms), "", "![curves](curves.png)", ""]
    path = study / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
