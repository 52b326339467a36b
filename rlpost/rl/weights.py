"""The weights message from the learner to the rollout engines (docs/design.md §0.4 "Weights message") on the
object-store transport (``sync.transport: object_store``; the streaming transport is ``rlpost.rl.stream``).

A message carries the policy version, the parameters in size-capped buckets (one transfer per bucket, never
one per parameter) and a checksum over every byte, which the receiver recomputes before loading.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class WeightsMessage:
    """version: the learner's policy version (optimizer steps taken); buckets: lists of (name, CPU tensor);
    checksum: sha256 over names, shapes, dtypes and bytes in order (see ``weights_checksum``)."""

    version: int
    buckets: list[list[tuple[str, torch.Tensor]]]
    checksum: str
    export_ms: float = 0.0  # time the sender spent copying the tensors into the buckets
    checksum_ms: float = 0.0  # time the sender spent on the checksum

    def named_tensors(self) -> Iterable[tuple[str, torch.Tensor]]:
        """All (name, tensor) pairs in bucket order."""
        for bucket in self.buckets:
            yield from bucket

    @property
    def num_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for _, t in self.named_tensors())


def weights_checksum(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 of (name, shape, dtype, bytes) of each tensor in order: any flipped bit or reordering changes it."""
    digest = hashlib.sha256()
    for name, tensor in named:
        t = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def pack_weights(named: Iterable[tuple[str, torch.Tensor]], version: int, bucket_mb: float = 64.0) -> WeightsMessage:
    """Copy parameters to CPU into buckets of at most ``bucket_mb`` MiB (a larger tensor gets its own bucket)."""
    if bucket_mb <= 0:
        raise ValueError(f"bucket_mb: must be > 0, got {bucket_mb}")
    cap = bucket_mb * 2**20
    t0 = time.perf_counter()
    buckets: list[list[tuple[str, torch.Tensor]]] = [[]]
    size = 0
    for name, tensor in named:
        t = tensor.detach().to("cpu", copy=True).contiguous()
        nbytes = t.numel() * t.element_size()
        if buckets[-1] and size + nbytes > cap:
            buckets.append([])
            size = 0
        buckets[-1].append((name, t))
        size += nbytes
    flat = [pair for bucket in buckets for pair in bucket]
    t1 = time.perf_counter()
    checksum = weights_checksum(flat)
    return WeightsMessage(version, buckets, checksum, 1000 * (t1 - t0), 1000 * (time.perf_counter() - t1))


def verify_weights(message: WeightsMessage) -> None:
    """Raise ``ValueError`` if the received tensors do not match the sender's checksum."""
    got = weights_checksum(message.named_tensors())
    if got != message.checksum:
        raise ValueError(f"weights message v{message.version}: checksum mismatch (sent {message.checksum[:12]}, "
                         f"received {got[:12]}); the transfer corrupted or reordered tensors")


class WeightSyncError(RuntimeError):
    """A rollout engine did not end up on the learner's weights (version or probe mismatch)."""


def check_sync(sent_version: int, acknowledged: list[int], want_logprobs: list[float] | None = None,
               engine_logprobs: list[list[float]] | None = None, tolerance: float = 1e-3) -> float | None:
    """Verify a sync: every engine acknowledged ``sent_version``, and (when probes are given) each engine's
    log-probs of the probe sequence are within ``tolerance`` (mean |gap|) of the learner's. Returns the worst gap
    (None without probes); raises ``WeightSyncError`` naming the engine otherwise."""
    for i, version in enumerate(acknowledged):
        if version != sent_version:
            raise WeightSyncError(f"rollout worker {i}: acknowledged v{version}, sent v{sent_version}")
    if want_logprobs is None or engine_logprobs is None:
        return None
    want = np.asarray(want_logprobs)
    worst = 0.0
    for i, got in enumerate(engine_logprobs):
        gap = float(np.abs(np.asarray(got) - want).mean())
        if not gap <= tolerance:  # also catches NaN
            raise WeightSyncError(f"rollout worker {i}: log-prob probe gap {gap:.2e} > sync.probe_tolerance "
                                  f"{tolerance:.0e} after loading v{sent_version}")
        worst = max(worst, gap)
    return worst
