"""The streaming weight sync's pure parts: bucket planning, framing, the per-bucket digest, and one real gloo
round trip between two threads (rlpost.rl.stream)."""

import threading
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from rlpost.rl.stream import (
    ROW_BYTES,
    ROW_WORDS,
    TENSOR_ALIGN,
    StreamError,
    TensorSpec,
    WeightStream,
    bucket_digest,
    open_bucket,
    open_group,
    pack_bucket,
    plan_stream,
    seal_bucket,
    send_stream,
    tensor_specs,
)


def named(seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [("embed.weight", torch.randn(50, 24, generator=g)), ("layer.0.bias", torch.randn(7, generator=g)),
            ("layer.0.weight", torch.randn(24, 24, generator=g)),
            ("layer.0.half", torch.randn(5, 3, generator=g).to(torch.bfloat16)),
            ("head.weight", torch.randn(300, 24, generator=g))]


def frames_of(plan, tensors) -> list[torch.Tensor]:
    out = []
    for b, bucket in enumerate(plan.buckets):
        frame = torch.empty(bucket.frame_bytes, dtype=torch.uint8)
        pack_bucket(frame, plan, b, [tensors[i] for i, _ in bucket.entries])
        seal_bucket(frame, plan, b)
        out.append(frame)
    return out


def test_plan_keeps_order_caps_buckets_and_aligns():
    pairs = named()
    specs = tensor_specs(pairs)
    plan = plan_stream(specs, bucket_bytes=8192, version=3)
    assert [plan.tensors[i].name for bucket in plan.buckets for i, _ in bucket.entries] == [n for n, _ in pairs]
    for bucket in plan.buckets:
        assert bucket.payload_bytes % ROW_BYTES == 0
        ends = [offset + plan.tensors[i].nbytes for i, offset in bucket.entries]
        assert all(offset % TENSOR_ALIGN == 0 for _, offset in bucket.entries)
        assert max(ends) <= bucket.payload_bytes
        # Over the cap only when one tensor alone is larger (the 300 x 24 head: 28.8 kB).
        assert max(ends) <= 8192 or len(bucket.entries) == 1
    assert len(plan.buckets[-1].entries) == 1 and plan.tensors[plan.buckets[-1].entries[0][0]].name == "head.weight"
    assert plan.num_bytes == sum(t.numel() * t.element_size() for _, t in pairs)
    assert plan_stream(specs, 1e9, 3).fingerprint != plan.fingerprint  # other boundaries, other plan
    assert plan_stream(specs, 8192, 4).fingerprint != plan.fingerprint  # other version, other plan
    with pytest.raises(ValueError, match="bucket_bytes"):
        plan_stream(specs, 0, 1)


def test_zero3_shapes_come_from_ds_shape():
    p = torch.nn.Parameter(torch.empty(0))
    p.ds_shape = torch.Size([4, 6])
    assert tensor_specs([("w", p)], lambda t: t.ds_shape) == [TensorSpec("w", (4, 6), "float32")]


def test_frames_round_trip_exactly():
    pairs = named()
    plan = plan_stream(tensor_specs(pairs), 4096, version=7)
    tensors = [t for _, t in pairs]
    got = [pair for b, frame in enumerate(frames_of(plan, tensors)) for pair in open_bucket(frame, plan, b)]
    assert [n for n, _ in got] == [n for n, _ in pairs]
    for (_, a), (_, b) in zip(got, pairs):
        assert a.dtype == b.dtype and torch.equal(a, b)


def test_digest_catches_a_flipped_bit_anywhere():
    frame = frames_of(plan := plan_stream(tensor_specs(named()), 1e9, 1), [t for _, t in named()])[0]
    n = plan.buckets[0].payload_bytes
    rng = np.random.default_rng(0)
    for pos in [0, n - 1, *rng.integers(0, n, 40)]:
        for bit in (0, 7):
            bad = frame.clone()
            bad[int(pos)] ^= 1 << bit
            with pytest.raises(StreamError, match="digest mismatch"):
                open_bucket(bad, plan, 0)


def test_digest_catches_reordering_of_words_and_rows():
    payload = torch.randint(0, 256, (4 * ROW_BYTES,), dtype=torch.uint8)
    words = payload.view(torch.int64)
    ref = bucket_digest(payload)
    for i, j in [(0, 1), (3, ROW_WORDS + 3), (5, 3 * ROW_WORDS + 900)]:  # same row, same column, neither
        swapped = words.clone()
        swapped[[i, j]] = swapped[[j, i]]
        assert bucket_digest(swapped.view(torch.uint8)) != ref, (i, j)
    rows = words.view(-1, ROW_WORDS)[[1, 0, 2, 3]].reshape(-1)  # two whole rows exchanged
    assert bucket_digest(rows.view(torch.uint8)) != ref
    assert bucket_digest(payload.clone()) == ref


def test_digest_sums_wrap_like_uint64():
    """The column / row sums are exact modulo 2^64 (large words overflow), whatever the summation order."""
    payload = torch.randint(0, 256, (2 * ROW_BYTES,), dtype=torch.uint8)
    words = payload.numpy().view(np.uint64).reshape(-1, ROW_WORDS)
    torch_cols = payload.view(torch.int64).view(-1, ROW_WORDS).sum(0).numpy().view(np.uint64)
    np.testing.assert_array_equal(torch_cols, words.sum(0, dtype=np.uint64))


def test_trailer_catches_frames_out_of_order_or_from_another_sync():
    pairs = named()
    plan = plan_stream(tensor_specs(pairs), 4096, version=5)
    frames = frames_of(plan, [t for _, t in pairs])
    assert len(frames) >= 3
    moved = frames[0].clone()  # bucket 0's frame stamped as bucket 1: a frame delivered at the wrong place
    moved[plan.buckets[0].payload_bytes:].view(torch.int64)[1] = 1
    with pytest.raises(StreamError, match="out of order"):
        open_bucket(moved, plan, 0)
    other = plan_stream(tensor_specs(pairs), 4096, version=6)
    with pytest.raises(StreamError, match="out of order or from another sync"):
        open_bucket(frames[0], other, 0)
    with pytest.raises(StreamError, match="frame of"):
        open_bucket(frames[0][:-8], plan, 0)


def test_pack_refuses_a_tensor_that_does_not_match_the_plan():
    pairs = named()
    plan = plan_stream(tensor_specs(pairs), 1e9, 1)
    tensors = [t for _, t in pairs]
    tensors[1] = torch.zeros(8)
    with pytest.raises(ValueError, match="layer.0.bias"):
        pack_bucket(torch.empty(plan.buckets[0].frame_bytes, dtype=torch.uint8), plan, 0, tensors)


def test_gloo_round_trip_between_two_threads():
    """A real gloo group (rank 0 sends, rank 1 iterates lazily); every tensor arrives bit-exact, in order."""
    from rlpost.storage.local_redis import free_port

    pairs = named(1)
    plan = plan_stream(tensor_specs(pairs), 4096, version=2)
    address, names = ("127.0.0.1", free_port()), ["learner rank 0", "rollout worker 0"]
    sent: dict = {}

    @contextmanager
    def bucket_tensors(b):
        yield [pairs[i][1] for i, _ in plan.buckets[b].entries]

    def sender():
        sent["times"] = send_stream(open_group(address, 0, names, 20.0), plan, bucket_tensors, depth=2)

    thread = threading.Thread(target=sender)
    thread.start()
    stream = WeightStream(open_group(address, 1, names, 20.0), plan, timeout_s=20.0, depth=2)
    got = [(n, t.clone()) for n, t in stream]
    stream.finish()
    thread.join()
    assert [n for n, _ in got] == [n for n, _ in pairs]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(got, pairs))
    assert sent["times"].export > 0 and stream.times.integrity > 0


def test_a_member_that_never_joins_is_named():
    from rlpost.storage.local_redis import free_port

    names = ["learner rank 0", "rollout worker 0", "rollout worker 1"]
    with pytest.raises(StreamError, match="rollout worker 0, rollout worker 1 did not join"):
        open_group(("127.0.0.1", free_port()), 0, names, timeout_s=0.2)
