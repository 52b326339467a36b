"""Dataset statistics for ``rlpost data stats``: decision histograms, speeds and agent counts per network.

``dataset_stats`` returns plain dicts (printable, JSON-able); ``plot_stats`` writes one PNG with the histograms.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from rlpost.scenarios.schema import HIST, Scenario


def dataset_stats(scenarios: list[Scenario]) -> dict:
    """Counts and distributions: overall and per-source decision histograms (full key and per axis),
    ego speed at t0 [m/s] quantiles, agent-count quantiles, keyframe kinds and splits."""
    per_source: dict[str, list[Scenario]] = defaultdict(list)
    for sc in scenarios:
        per_source[sc.source].append(sc)

    def summary(group):
        speeds = np.array([sc.history[-1, 3] for sc in group])
        agents = np.array([int(sc.agent_valid[:, HIST - 1].sum()) if len(sc.agent_type) else 0 for sc in group])
        q = (0, 25, 50, 75, 100)
        return {
            "count": len(group),
            "decisions": dict(Counter(sc.decision_key for sc in group).most_common()),
            "longitudinal": dict(Counter(sc.decision_longitudinal or "none" for sc in group).most_common()),
            "lateral": dict(Counter(
                (sc.decision_lateral or "none") + (f"_{sc.decision_direction}" if sc.decision_direction else "")
                for sc in group).most_common()),
            "speed_t0_quantiles": dict(zip(map(str, q), np.round(np.percentile(speeds, q), 2).tolist())),
            "agents_t0_quantiles": dict(zip(map(str, q), np.percentile(agents, q).tolist())),
            "keyframes": dict(Counter(sc.keyframe for sc in group)),
            "splits": dict(Counter(sc.split for sc in group)),
        }

    if not scenarios:
        raise ValueError("dataset_stats: no scenarios")
    return {"all": summary(scenarios), "per_source": {k: summary(v) for k, v in sorted(per_source.items())}}


def format_stats(stats: dict) -> str:
    """A plain-text report of ``dataset_stats`` output."""
    lines = []
    for name, s in [("ALL", stats["all"]), *stats["per_source"].items()]:
        lines.append(f"== {name}: {s['count']} scenarios, splits {s['splits']}, keyframes {s['keyframes']}")
        lines.append(f"   ego speed at t0 quantiles (m/s): {s['speed_t0_quantiles']}")
        lines.append(f"   agents at t0 quantiles: {s['agents_t0_quantiles']}")
        for axis in ("longitudinal", "lateral", "decisions"):
            lines.append(f"   {axis}:")
            lines += [f"     {v:6d}  {k}" for k, v in s[axis].items()]
    return "\n".join(lines)


def plot_stats(scenarios: list[Scenario], path) -> Path:
    """Write a PNG: decision histograms per axis, ego speeds and agent counts per source network."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on the build machines
    import matplotlib.pyplot as plt

    stats = dataset_stats(scenarios)
    sources = sorted(stats["per_source"])
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    for ax, axis in zip(axes[0], ("longitudinal", "lateral")):
        keys = list(stats["all"][axis])
        bottom = np.zeros(len(keys))
        for src in sources:
            vals = np.array([stats["per_source"][src][axis].get(k, 0) for k in keys])
            ax.barh(keys, vals, left=bottom, label=src)
            bottom += vals
        ax.set_title(f"{axis} decisions")
        ax.legend(fontsize=7)
    speeds = [[sc.history[-1, 3] for sc in scenarios if sc.source == s] for s in sources]
    axes[1, 0].hist(speeds, bins=20, stacked=True, label=sources)
    axes[1, 0].set_title("ego speed at t0 (m/s)")
    axes[1, 0].legend(fontsize=7)
    counts = [[int(sc.agent_valid[:, HIST - 1].sum()) if len(sc.agent_type) else 0 for sc in scenarios
               if sc.source == s] for s in sources]
    axes[1, 1].hist(counts, bins=20, stacked=True, label=sources)
    axes[1, 1].set_title("agents at t0 per scenario")
    axes[1, 1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
