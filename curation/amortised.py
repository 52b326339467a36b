"""Amortised disagreement scores (docs/design.md §7): a table of every candidate's latest score, fed for free by the
training steps and topped up by a budgeted re-score per round, so online curation need not re-generate for the
whole pool.

Every training step already holds, for its scenarios, G rewards, sampler log-probs and lengths under the policy
that generated them: the same inputs a curation round would produce, so its scores enter the table at no extra
generation (``source`` "training"). A round then re-scores only ``budget`` candidates — never-scored first, then
the oldest scores or those nearest the selection boundary — and selects from the whole table, each score with its
age in steps (optionally shrunk toward the pool mean as it ages).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ScoreEntry:
    """One candidate's latest disagreement score and where it came from."""

    score: float
    step: int  # the training step whose policy generated the scored rollouts
    version: int  # that policy's version
    source: str  # "round" (a full round), "training" (a training step's rollouts), "rescore" (budgeted re-score)


class ScoreTable:
    """scenario id -> its latest ``ScoreEntry``; a newer step replaces an older one, never the reverse."""

    def __init__(self, entries: dict[str, ScoreEntry] | None = None):
        self.entries: dict[str, ScoreEntry] = dict(entries or {})

    def update(self, ids, scores, step: int, version: int, source: str) -> None:
        for sid, score in zip(ids, scores):
            old = self.entries.get(sid)
            if old is None or old.step <= step:
                self.entries[sid] = ScoreEntry(float(score), int(step), int(version), source)

    def missing(self, ids) -> list[str]:
        return [i for i in ids if i not in self.entries]

    def scores(self, ids) -> dict[str, float]:
        return {i: self.entries[i].score for i in ids if i in self.entries}

    def ages(self, ids, step: int) -> np.ndarray:
        """Age in training steps of each id's score at ``step``, ``(len(ids),)``."""
        return np.array([step - self.entries[i].step for i in ids], dtype=np.float64)

    def effective(self, ids, step: int, half_life: float | None) -> np.ndarray:
        """The scores a selection ranks, ``(len(ids),)``: as stored, or with ``half_life`` (steps) shrunk toward
        the pool mean by 0.5^(age / half_life). Shrinking, not decaying to zero: an old score is less certain, not
        less informative on average, so it is pulled to the typical score rather than ranked below every fresh
        one."""
        s = np.array([self.entries[i].score for i in ids], dtype=np.float64)
        if half_life is None or s.size == 0:
            return s
        keep = 0.5 ** (self.ages(ids, step) / half_life)
        return s.mean() + (s - s.mean()) * keep

    def rescore_order(self, ids, step: int, order: str, boundary_rank: int, half_life: float | None) -> list[str]:
        """Candidates in the order a budgeted re-score takes them: never-scored first, then ``oldest`` (the score's
        step, ascending) or ``boundary`` (nearest the ``boundary_rank``-th best effective score, where a fresh score
        most likely changes the selection). Ties by id, so the order is deterministic."""
        scored = [i for i in ids if i in self.entries]
        if order == "oldest":
            rest = sorted(scored, key=lambda i: (self.entries[i].step, i))
        elif order == "boundary":
            eff = self.effective(scored, step, half_life)
            cut = np.sort(eff)[::-1][min(max(boundary_rank, 1), len(eff)) - 1] if len(eff) else 0.0
            rest = [scored[k] for k in sorted(range(len(scored)), key=lambda k: (abs(eff[k] - cut), scored[k]))]
        else:
            raise ValueError(f"order: unknown re-score order {order!r}; known: oldest, boundary")
        return sorted(self.missing(ids)) + rest

    def drop_from(self, step: int) -> None:
        """Forget scores from ``step`` on (a resumed run redoes those steps)."""
        self.entries = {i: e for i, e in self.entries.items() if e.step < step}

    def to_json(self) -> str:
        return json.dumps({i: asdict(e) for i, e in self.entries.items()})

    @classmethod
    def from_json(cls, text: str | bytes | None) -> ScoreTable:
        return cls({i: ScoreEntry(**e) for i, e in json.loads(text).items()} if text else None)


def rescore_budget(tokens_budget: float, tokens_per_candidate: float) -> int:
    """How many candidates a round may re-score: whole groups that fit in ``tokens_budget`` generated tokens."""
    if tokens_per_candidate <= 0:
        raise ValueError(f"tokens_per_candidate: must be > 0, got {tokens_per_candidate}")
    return max(int(tokens_budget // tokens_per_candidate), 0)


def freshness(table: ScoreTable, selected, step: int) -> dict[str, float]:
    """Age distribution [steps] of the scores a selection used, and the share of those scores from training steps."""
    if not selected:
        return {}
    ages = table.ages(selected, step)
    from_training = np.mean([table.entries[i].source == "training" for i in selected])
    return {"age_mean": float(ages.mean()), "age_p50": float(np.median(ages)), "age_p90": float(np.quantile(ages, 0.9)),
            "age_max": float(ages.max()), "from_training": float(from_training)}

