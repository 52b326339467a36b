"""The loop's pure parts, each on its own (no Ray, no vLLM): the scenario draw, advantages on records, the
staleness bound, the step scalars, the split over engines/ranks, the train batch, the weights message and its
verification, and the Parquet writer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from rlpost.actors.rollout import split
from rlpost.common import metric_names as M
from rlpost.loop.steps import StalenessError, assign_advantages, check_staleness, reward_means, scenario_batch
from rlpost.rewards.compose import ComponentRecord
from rlpost.rl.advantages.dr_grpo import DrGRPO
from rlpost.rl.learner import make_train_batch
from rlpost.rl.rollout import RolloutRecord
from rlpost.rl.weights import WeightSyncError, check_sync, pack_weights, verify_weights
from rlpost.storage.store import StepFiles, records_table


def record(scenario="s0", group_index=0, version=0, reward=0.0, waypoints=None, **rewards) -> RolloutRecord:
    return RolloutRecord(
        run="r", step=3, scenario_id=scenario, group_index=group_index, policy_version=version, curation_round=1,
        prompt_ids=[1, 2], completion_ids=[3, 4, 5], sampler_logprobs=[-0.1, -0.2, -0.3], trace="stop for the light",
        controls=None if waypoints is None else np.zeros((64, 2)), waypoints=waypoints, finish_reason="stop",
        decode_status="ok" if waypoints is not None else "no_trajectory", rewards=rewards, reward_total=reward)


def component(value, status="ok", **info) -> ComponentRecord:
    return ComponentRecord(value=value, status=status, latency_ms=1.5, version="1", weight=1.0, info=info)


def test_scenario_draw_depends_on_seed_and_step_only():
    ids = [f"s{i}" for i in range(50)]
    a = scenario_batch(ids, step=4, size=8, seed=1)
    assert a == scenario_batch(list(ids), step=4, size=8, seed=1)  # a resumed run draws the same scenarios
    assert len(set(a)) == 8 and set(a) <= set(ids)
    assert a != scenario_batch(ids, step=5, size=8, seed=1) and a != scenario_batch(ids, step=4, size=8, seed=2)
    assert sorted(scenario_batch(ids[:3], step=0, size=8, seed=0)) == ids[:3]  # capped at the pool


def test_advantages_are_set_per_contiguous_group():
    records = [record(f"s{i // 4}", i % 4, reward=r) for i, r in enumerate([1, 2, 3, 4, 5, 5, 5, 5])]
    stats = assign_advantages(records, group_size=4, estimator=DrGRPO())
    assert [r.advantage for r in records] == pytest.approx([-1.5, -0.5, 0.5, 1.5, 0, 0, 0, 0])
    assert stats == {M.ZERO_VARIANCE_GROUPS: 1, M.GROUPS: 2}


def test_staleness_bound():
    records = [record(version=4), record(version=3)]
    assert check_staleness(records, step=4, bound=1) == 1
    with pytest.raises(StalenessError, match="v2 is 2 versions old, over trainer.staleness=1"):
        check_staleness([record(version=2)], step=4, bound=1)


def test_step_scalars_from_typed_components():
    future = np.zeros((64, 4))
    by_id = {"s0": SimpleNamespace(future=future)}
    moved = future.copy()
    moved[:, 0] += 2.0
    records = [record(reward=1.0, waypoints=moved, quality=component(-1.0), critic=component(0.8)),
               record(group_index=1, reward=3.0, quality=component(0.0, "error"), critic=component(0.4))]
    out = reward_means(records, by_id)
    assert out[M.REWARD] == 2.0 and out[M.reward_of("quality")] == -0.5
    assert out[M.reward_of("critic")] == pytest.approx(0.6)
    assert out[M.ok_rate_of("quality")] == 0.5 and out[M.DECODED_RATE] == 0.5 and out[M.ADE] == pytest.approx(2.0)


def test_split_is_contiguous_and_near_equal():
    assert split(list(range(7)), 3) == [[0, 1], [2, 3, 4], [5, 6]]
    assert split([1, 2], 4) == [[], [1], [2], []]  # more parts than items: empty parts, which get no call
    assert sum(split(list(range(10)), 4), []) == list(range(10))


def test_train_batch_layout():
    batch = make_train_batch([[7, 8], [7]], [[1, 2, 3], [4]], [[-0.1, -0.2, -0.3], [-0.4]], [0.5, -0.5], pad_id=0)
    assert batch.input_ids.tolist() == [[7, 8, 1, 2, 3], [7, 4, 0, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch.completion_mask.tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert batch.old_logp[0, 2:].tolist() == pytest.approx([-0.1, -0.2, -0.3])
    assert batch.old_logp[1, 1] == pytest.approx(-0.4)
    assert batch.advantages.tolist() == [0.5, -0.5]
    with pytest.raises(ValueError, match=r"sampler_logps\[0\]: 2 log-probs for 3 completion tokens"):
        make_train_batch([[7]], [[1, 2, 3]], [[-0.1, -0.2]], [0.0], pad_id=0)


def test_weights_message_buckets_and_checksum():
    named = [("a", torch.ones(256)), ("b", torch.zeros(256)), ("c", torch.arange(4.0))]  # 1 KiB, 1 KiB, 16 B
    message = pack_weights(named, version=3, bucket_mb=1.5 / 1024)
    assert [[n for n, _ in b] for b in message.buckets] == [["a"], ["b", "c"]] and message.num_bytes == 2064
    verify_weights(message)
    message.buckets[1][1][1][2] = 7.0  # one value changed in transit
    with pytest.raises(ValueError, match="checksum mismatch"):
        verify_weights(message)
    with pytest.raises(ValueError, match="bucket_mb"):
        pack_weights(named, version=0, bucket_mb=0)


def test_sync_verification():
    assert check_sync(2, [2, 2]) is None
    assert check_sync(2, [2], [-1.0, -2.0], [[-1.0, -2.0004]], tolerance=1e-3) == pytest.approx(2e-4)
    with pytest.raises(WeightSyncError, match="rollout worker 1: acknowledged v1, sent v2"):
        check_sync(2, [2, 1])
    with pytest.raises(WeightSyncError, match="rollout worker 0: log-prob probe gap"):
        check_sync(2, [2], [-1.0], [[-1.5]], tolerance=1e-3)
    with pytest.raises(WeightSyncError):
        check_sync(2, [2], [-1.0], [[float("nan")]], tolerance=1e-3)


def test_parquet_writer_flattens_components_once(tmp_path):
    records = [record(reward=1.0, waypoints=np.ones((64, 4)), quality=component(-1.0)),
               record(group_index=1, quality=component(0.0, "error", error="boom"))]
    files = StepFiles(tmp_path / "rollouts")
    files.write(3, records_table(records))
    files.write(4, records_table(records[:1]))
    rows = pq.read_table(files.path(3)).to_pylist()
    assert rows[0]["record_id"] == "r/3/s0/0" and len(rows[0]["waypoints"]) == 256 and rows[1]["controls"] is None
    assert rows[1]["reward.quality.status"] == "error"
    assert json.loads(rows[1]["reward.quality.info"]) == {"error": "boom"}
    assert rows[1]["decode_status"] == "no_trajectory" and rows[0]["reward.quality.value"] == -1.0
    assert files.truncate_from(4) == 1 and files.steps() == [3] and files.read().num_rows == 2
