"""LearnerWorker: one data-parallel rank of the DeepSpeed learner as a Ray actor."""

from __future__ import annotations

import os

import ray

from rlpost.rl.config import LearnerConfig


@ray.remote
class LearnerWorker:
    def __init__(self, rank: int, world_size: int, master_port: int, threads: int = 1):
        # torch.distributed reads these when DeepSpeed initialises the gloo (CPU) / NCCL (GPU) group.
        os.environ.update({"RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": str(world_size),
                           "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"), "MASTER_PORT": str(master_port)})
        from rlpost.common.runtime import configure_cpu_runtime

        configure_cpu_runtime(threads)
        self.learner = None

    def setup(self, checkpoint: str, cfg: LearnerConfig, per_rank_batch: int, group_size: int) -> int:
        """Build the engine; every rank must be called concurrently (the process group forms here)."""
        from rlpost.rl.learner import GRPOLearner

        self.learner = GRPOLearner(checkpoint, cfg, per_rank_batch, group_size)
        return self.learner.version

    def update(self, batch, normalizer: float) -> dict:
        return self.learner.update(batch, normalizer)

    def export_weights(self, bucket_mb: float):
        return self.learner.export_weights(bucket_mb)

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        return self.learner.probe_logprobs(token_ids)

    def save(self, directory: str, client_state: dict) -> None:
        self.learner.save(directory, client_state)

    def load(self, directory: str) -> dict:
        return self.learner.load(directory)

    def save_pretrained(self, directory: str) -> None:
        self.learner.save_pretrained(directory)
