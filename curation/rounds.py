"""One curation round as pure functions: score candidates from their rollouts, select, describe (docs/design.md §7)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlpost.curation.analysis import score_summary
from rlpost.curation.schedule import CurationConfig
from rlpost.curation.scores import disagreement_score
from rlpost.curation.selection import select


@dataclass(frozen=True)
class RoundScores:
    """What scoring a round's candidates gives (one entry per candidate, in ``candidates`` order): the
    disagreement score, whether the candidate's group had zero reward variance, the entropy of the model's
    distribution over the group, plus the selected ids and a summary of the scores. ``score_steps`` / ``sources``:
    the step whose policy produced each score and how (amortised rounds; None: all scored in this round)."""

    candidates: list[str]
    scores: list[float]
    zero_variance: list[bool]
    p_model_entropy: list[float]
    selected: list[str]
    score_summary: dict
    score_steps: list[int] | None = None
    sources: list[str] | None = None


@dataclass(frozen=True)
class CurationRound:
    """One curation round (docs/design.md §0.4 "Curation round"): its id, the step it was started for, the policy
    version that scored it, the scores and selection, and what it cost (wall time [s], tokens generated, forward
    FLOPs). ``stats``: amortised rounds' freshness and agreement scalars (``rlpost.curation.amortised``), and the
    uncharged tokens of an audit re-score."""

    round: int
    step: int
    policy_version: int
    scores: RoundScores
    wall_s: float
    tokens: int
    flops: float
    stats: dict = field(default_factory=dict)

    @property
    def score_mean(self) -> float:
        return float(self.scores.score_summary.get("mean", 0.0))


@dataclass(frozen=True)
class RoundFailed:
    """A round lost to the curator's death; the restarted curator serves the last published selection."""

    reason: str


def candidate_pool(ids: list[str], round_id: int, cfg: CurationConfig, seed: int) -> list[str]:
    """The candidates scored in a round: ``pool_size`` ids drawn once per run seed (all when pool_size is None).

    The pool is the same in every round (``round_id`` does not enter the draw) so that successive selections — and
    an offline arm against an online arm of the same seed — rank the same scenarios: overlap and rank correlation
    then measure how the policy's preferences drifted, not how the candidates were resampled.
    """
    if cfg.pool_size is None or cfg.pool_size >= len(ids):
        return list(ids)
    rng = np.random.default_rng([seed, 7])
    return sorted(ids[i] for i in rng.choice(len(ids), cfg.pool_size, replace=False))


def group_arrays(records: list) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(ids, rewards, seq_logprobs, lengths) with ``(B, G)`` arrays from rollout records grouped by scenario."""
    groups: dict[str, list] = defaultdict(list)
    for r in records:
        groups[r.scenario_id].append(r)
    ids = list(groups)
    size = min(len(g) for g in groups.values())
    rewards = np.array([[r.reward_total for r in groups[i][:size]] for i in ids])
    logps = np.array([[float(np.sum(r.sampler_logprobs)) for r in groups[i][:size]] for i in ids])
    lengths = np.array([[max(len(r.completion_ids), 1) for r in groups[i][:size]] for i in ids])
    return ids, rewards, logps, lengths


@dataclass(frozen=True)
class GroupScores:
    """Disagreement scores of scenario groups, aligned with ``ids``, plus the per-group diagnostics a round keeps."""

    ids: list[str]
    scores: np.ndarray  # (B,)
    zero_variance: list[bool]
    p_model_entropy: list[float]


def score_groups(records: list, cfg: CurationConfig) -> GroupScores:
    """Score each scenario's group of rollout records (``reward_total`` set) with the configured divergence."""
    ids, rewards, logps, lengths = group_arrays(records)
    scores = disagreement_score(rewards, logps, lengths, cfg.beta, cfg.score)
    p_model_entropy = []
    for lp, n in zip(logps, lengths):
        z = lp / n - (lp / n).max()
        p = np.exp(z) / np.exp(z).sum()
        p_model_entropy.append(float(-(p * np.log(np.maximum(p, 1e-300))).sum()))
    return GroupScores(ids, scores, (np.ptp(rewards, axis=1) <= 1e-8).tolist(), p_model_entropy)


def choose(ids: list[str], scores, cfg: CurationConfig, rng: np.random.Generator) -> list[str]:
    """The selection from scores aligned with ``ids``, by the configured strategy."""
    return select(cfg.strategy, ids, scores, cfg.size, rng,
                  **({"random_share": cfg.random_share} if cfg.strategy == "top_plus_random" else {}))


def score_and_select(records: list, cfg: CurationConfig, rng: np.random.Generator) -> RoundScores:
    """A full round: scores of every candidate (from its group of rollout records) and the selection."""
    g = score_groups(records, cfg)
    return RoundScores(g.ids, g.scores.tolist(), g.zero_variance, g.p_model_entropy, choose(g.ids, g.scores, cfg, rng),
                       score_summary(g.scores))


def round0_path(run_dir: str | Path) -> Path:
    """Where a run keeps its round 0 (``SelectionStore`` writes rounds as ``curation/round=NNNNNN.parquet``)."""
    return Path(run_dir) / "curation" / "round=000000.parquet"


def adopt_round0(run_dir: str, candidates: list[str], cfg: CurationConfig,
                 rng: np.random.Generator) -> tuple[RoundScores, float, int]:
    """Round 0 of an earlier run with the same start checkpoint, seed, pool and G (its scores are what this run's
    round 0 would compute): its scores, this run's selection from them, and the recorded (wall s, tokens) it cost."""
    import pyarrow.parquet as pq

    from rlpost.common.errors import MissingPathError

    path = round0_path(run_dir)
    try:
        rows = sorted(pq.read_table(path).to_pylist(), key=lambda r: r["scenario_id"])
    except FileNotFoundError:
        raise MissingPathError(f"curation.reuse_round0: no round 0 at {path}") from None
    ids = [r["scenario_id"] for r in rows]
    if ids != sorted(candidates):
        raise ValueError(f"curation.reuse_round0: {path} scored {len(ids)} candidates, not this run's pool of "
                         f"{len(candidates)} (pool_size and seed must match)")
    scores = np.array([r["score"] for r in rows])
    return (RoundScores(ids, scores.tolist(), [r["zero_variance"] for r in rows], [r["p_model_entropy"] for r in rows],
                        choose(ids, scores, cfg, rng), score_summary(scores)), rows[0]["wall_s"], rows[0]["tokens"])


def random_selection(ids: list[str], cfg: CurationConfig, rng: np.random.Generator) -> RoundScores:
    """A round of the ``random`` schedule: no scoring."""
    selected = select("random", ids, np.zeros(len(ids)), cfg.size, rng)
    return RoundScores(ids, [0.0] * len(ids), [False] * len(ids), [float("nan")] * len(ids), selected, {"count": 0})
