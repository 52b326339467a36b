"""The run report: before/after held-out table and training curves (markdown + PNG), from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlpost.common import metric_names as M


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def plot_curves(rows: list[dict], path: Path) -> Path:
    """Reward components, ADE, consistency and step time over training steps."""
    train = [r for r in rows if r["step"] >= 0 and M.REWARD in r]
    panels = [k for k in train[0] if k.startswith(M.reward_of(""))] + [M.ADE, M.SAMPLER_LOGP_GAP, M.STEP_S]
    panels = [k for k in panels if any(k in r and r[k] is not None for r in train)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.8))
    for ax, key in zip(axes if len(panels) > 1 else [axes], panels):
        ax.plot([r["step"] for r in train if r.get(key) is not None], [r[key] for r in train if r.get(key) is not None])
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def critic_agreement(run_dir: str | Path, judge: str, rubric: str) -> dict | None:
    """Judge-vs-rubric agreement on the run's training rollouts: components ``judge`` and ``rubric`` (labels of two
    ``reasoning_critic`` components, e.g. the judge as the critic and the rubric logged with weight 0), on the
    samples both graded (status ok or unparseable; grades read back from the normalised values). None without
    rollouts or those columns."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / "rollouts"
    if not path.exists():
        return None
    cols = [f"reward.{c}.{f}" for c in (judge, rubric) for f in ("value", "status")]
    table = pq.read_table(path)
    if not set(cols) <= set(table.column_names):
        return None
    rows = table.select(cols).to_pylist()
    graded = ("ok", "unparseable")
    both = [(round(5 * r[cols[0]]), round(5 * r[cols[2]])) for r in rows
            if r[cols[1]] in graded and r[cols[3]] in graded]
    if not both:
        return {"n": 0, "rollouts": len(rows)}
    return {"n": len(both), "rollouts": len(rows), "exact": sum(a == b for a, b in both) / len(both),
            "within_1": sum(abs(a - b) <= 1 for a, b in both) / len(both),
            "mean_abs_diff": sum(abs(a - b) for a, b in both) / len(both)}


def write_report(run_dir: str | Path, summary: dict, extra: dict | None = None,
                 critics: tuple[str, str] | None = None) -> Path:
    """``report.md`` (and ``curves.png``) in ``run_dir``: held-out before vs after GRPO and the curves."""
    run_dir = Path(run_dir)
    rows = _rows(run_dir)
    before, after = summary.get("before", {}), summary.get("after", {})
    lines = ["# rlpost run report", ""]
    for key, value in (extra or {}).items():
        lines.append(f"- **{key}**: {value}")
    lines += ["", "## Held-out scenarios, before and after GRPO", "", "| metric | before (SFT) | after GRPO | change |",
              "|---|---|---|---|"]
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        change = f"{a - b:+.3f}" if isinstance(a, float) and isinstance(b, float) else ""
        lines.append(f"| {key.removeprefix(M.HELD_OUT_PREFIX)} | {b if b is None else f'{b:.3f}'} | "
                     f"{a if a is None else f'{a:.3f}'} | {change} |")
    train = [r for r in rows if r["step"] >= 0 and M.REWARD in r]
    if train:
        plot_curves(rows, run_dir / "curves.png")
        mean = lambda k: sum(r.get(k) or 0.0 for r in train) / len(train)  # noqa: E731
        lines += ["", "## Training", "", f"{len(train)} GRPO steps; mean step time {mean(M.STEP_S):.2f} s "
                  f"(generation wait {mean(M.GENERATE_WAIT_S):.2f}, rewards {mean(M.SCORE_S):.2f}, "
                  f"learner {mean(M.LEARN_S):.2f}, sync {mean(M.SYNC_S):.2f}); mean sampler-vs-learner "
                  f"log-prob gap {mean(M.SAMPLER_LOGP_GAP):.2e}.", "", "![curves](curves.png)"]
    agree = critic_agreement(run_dir, *critics) if critics else None
    if agree is not None:
        judge, rubric = critics  # type: ignore[misc]
        lines += ["", "## Reasoning critic: judge vs rubric on the run's rollouts", ""]
        if agree["n"]:
            lines.append(f"`{judge}` (the judge, rewarded) vs `{rubric}` (the rubric, weight 0) on {agree['n']} of "
                         f"{agree['rollouts']} training rollouts: exact agreement {agree['exact']:.3f}, within ±1 "
                         f"{agree['within_1']:.3f}, mean |diff| {agree['mean_abs_diff']:.3f}.")
        else:
            lines.append(f"no rollout was graded by both `{judge}` and `{rubric}` ({agree['rollouts']} rollouts).")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
