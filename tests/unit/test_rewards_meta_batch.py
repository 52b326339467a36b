"""The batched meta-action labeller equals rlpost.domain.meta_actions.future_meta_actions, sample by sample."""

from __future__ import annotations

import numpy as np
import pytest

from rlpost.domain.meta_actions import future_meta_actions
from rlpost.domain.trajectory import unicycle_rollout
from rlpost.rewards.meta_batch import future_labels_batch


def _history(v0: np.ndarray) -> np.ndarray:
    h = np.zeros((v0.size, 20, 4))
    h[..., 0] = (np.arange(20) - 19) * 0.1 * v0[:, None]
    h[..., 3] = v0[:, None]
    return h


@pytest.mark.parametrize("mode", ["smooth", "noisy", "stop_and_reverse"])
def test_batch_labels_equal_reference(mode):
    rng = np.random.default_rng({"smooth": 0, "noisy": 1, "stop_and_reverse": 2}[mode])
    b = 250
    v0 = rng.uniform(0, 15, b)
    if mode == "smooth":
        u = np.repeat(rng.normal(0, [1.2, 0.04], (b, 4, 2)), 16, axis=1)
    elif mode == "noisy":
        u = rng.normal(0, 1, (b, 64, 2)) * [0.6, 0.02]
    else:  # braking to a standstill and beyond (reverse), sharp steering, speeds hovering around the cut bands
        v0 = rng.uniform(0, 3, b)
        u = np.stack([rng.uniform(-3, 1, (b, 64)), rng.normal(0, 0.1, (b, 64))], -1)
    hist = _history(v0)
    fut = unicycle_rollout(u, v0)
    got = future_labels_batch(hist, fut)
    want = [future_meta_actions(hist[i], fut[i]) for i in range(b)]
    assert got == want
    labels = {lab for pair in want for axis in pair for lab in axis}
    assert len(labels) >= 4  # the case mix really exercises several classes


def test_empty_batch():
    assert future_labels_batch(np.zeros((0, 20, 4)), np.zeros((0, 64, 4))) == []
