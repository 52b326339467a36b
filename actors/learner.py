"""LearnerWorker (one data-parallel rank of the DeepSpeed learner as a Ray actor) and the learner group: the
driver's side of all ranks (update, weight export, probe, checkpoints)."""

from __future__ import annotations

import os

import numpy as np
import ray

from rlpost.actors.common import ActorDiedError, actor_env, wait
from rlpost.rl.config import LearnerConfig


@ray.remote
class LearnerWorker:
    def __init__(self, rank: int, world_size: int, threads: int = 1):
        # LOCAL_RANK 0: Ray gives each rank its own CUDA_VISIBLE_DEVICES, so its GPU is device 0.
        os.environ.update({"RANK": str(rank), "LOCAL_RANK": "0", "WORLD_SIZE": str(world_size)})
        from rlpost.common.runtime import configure_cpu_runtime

        configure_cpu_runtime(threads)
        self.learner = None

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0's side of the process group's rendezvous: this node's address (as Ray knows it) and a port
        free on it. A global MASTER_ADDR cannot be right for ranks that Ray may place on any node."""
        import socket

        address = ray.util.get_node_ip_address()
        with socket.socket() as sock:
            sock.bind((address, 0))
            return address, sock.getsockname()[1]

    def setup(self, master: tuple[str, int], checkpoint: str, cfg: LearnerConfig, per_rank_batch: int,
              group_size: int) -> int:
        """Build the engine; every rank must be called concurrently (the process group forms here, at ``master``:
        rank 0's address and port)."""
        # torch.distributed reads these when DeepSpeed initialises the gloo (CPU) / NCCL (GPU) group.
        os.environ.update({"MASTER_ADDR": master[0], "MASTER_PORT": str(master[1])})
        from rlpost.rl.learner import GRPOLearner

        self.learner = GRPOLearner(checkpoint, cfg, per_rank_batch, group_size)
        return self.learner.version

    def update(self, batch, normalizer: float) -> dict:
        return self.learner.update(batch, normalizer)

    def export_weights(self, bucket_mb: float):
        return self.learner.export_weights(bucket_mb)

    def stream_plan(self, bucket_mb: float):
        return self.learner.stream_plan(bucket_mb)

    def stream_weights(self, plan, address: tuple[str, int], names: list[str], timeout_s: float,
                       depth: int) -> dict | None:
        return self.learner.stream_weights(plan, address, names, timeout_s, depth)

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        return self.learner.probe_logprobs(token_ids)

    def version(self) -> int:
        return self.learner.version

    def save(self, directory: str, client_state: dict) -> None:
        self.learner.save(directory, client_state)

    def load(self, directory: str) -> dict:
        return self.learner.load(directory)

    def save_pretrained(self, directory: str) -> None:
        self.learner.save_pretrained(directory)


class LearnerGroup:
    """The learner ranks of a run, gang-placed in the placement group. Not restartable: their optimizer state lives
    only in them, so a rank's death ends the run at the last checkpoint."""

    def __init__(self, cfg, checkpoint: str, placement):
        from rlpost.policy.generate import completion_budget
        from rlpost.policy.model import load_model_config

        lc = self.cfg = cfg.learner
        self.group_size = cfg.rollout.group_size
        self.ranks = [
            LearnerWorker.options(num_cpus=lc.num_cpus, num_gpus=lc.num_gpus,
                                  scheduling_strategy=placement.slot("learner", r),
                                  runtime_env=actor_env(lc.threads)).remote(r, lc.num_ranks, lc.threads)
            for r in range(lc.num_ranks)
        ]
        self.master = wait(self.ranks[0].rendezvous.remote(), "learner rank 0 start", lc.timeout_s)
        per_rank = cfg.trainer.scenarios_per_step * cfg.rollout.group_size // lc.num_ranks
        wait([w.setup.remote(self.master, checkpoint, lc, per_rank, cfg.rollout.group_size) for w in self.ranks],
             f"learner setup (DeepSpeed process group at {self.master[0]}:{self.master[1]})", lc.timeout_s)
        self.completion_budget = completion_budget(load_model_config(checkpoint))

    def update(self, records: list, pad_id: int, expert_inputs: tuple[list, list] | None = None) -> dict:
        """One optimizer step on ``records`` (advantages set): each rank gets a contiguous slice of whole groups.
        expert_inputs: (prefix lengths, normalised target controls), one per record, when the expert trains."""
        from rlpost.actors.rollout import split
        from rlpost.rl.learner import make_train_batch

        normalizer = self._normalizer(records)
        refs = []
        bounds = np.cumsum([0] + [len(p) for p in split(records, len(self.ranks))])
        for worker, a, b in zip(self.ranks, bounds[:-1], bounds[1:]):
            part = records[a:b]
            extra = {} if expert_inputs is None else {"prefix_lengths": expert_inputs[0][a:b],
                                                      "expert_targets": expert_inputs[1][a:b]}
            batch = make_train_batch([r.prompt_ids for r in part], [r.completion_ids for r in part],
                                     [r.sampler_logprobs for r in part], [r.advantage for r in part], pad_id, **extra)
            refs.append(worker.update.remote(batch, float(normalizer)))
        try:
            per_rank = wait(refs, "learner update", self.cfg.timeout_s)
        except ActorDiedError as exc:
            raise ActorDiedError(f"{exc}. A learner rank holds optimizer state that cannot be rebuilt, so the run "
                                 f"ends here; rerun the same command to resume from its last checkpoint") from None
        out = {k: float(np.mean([m[k] for m in per_rank])) for k in per_rank[0]}
        out["loss"] = float(np.sum([m["loss"] for m in per_rank]))  # rank losses are shares of one global loss
        return out

    def _normalizer(self, records: list) -> float:
        """The global count the loss divides by (``PolicyLoss.normalizer``), over the whole step's batch."""
        return self.cfg.loss.normalizer(completion_lengths=[len(r.completion_ids) for r in records],
                                        group_size=self.group_size, completion_budget=self.completion_budget)

    def export_weights(self, bucket_mb: float, timeout_s: float):
        """Rank 0's weights message (every rank takes part: ZeRO-3 gathers)."""
        return wait([w.export_weights.remote(bucket_mb) for w in self.ranks], "weight export", timeout_s)[0]

    def start_stream(self, bucket_mb: float, names: list[str], timeout_s: float, depth: int):
        """Plan a streaming sync on rank 0 and start every rank sending (rank 0) or gathering (ZeRO-3); returns
        (plan, the stream's rendezvous address on rank 0's node, the ranks' refs: rank 0's answers its stage
        times). ``names``: the stream group's members, rank 0 first."""
        plan = wait(self.ranks[0].stream_plan.remote(bucket_mb), "learner stream plan", timeout_s)
        address = wait(self.ranks[0].rendezvous.remote(), "learner stream rendezvous", timeout_s)
        refs = [w.stream_weights.remote(plan, address, names, timeout_s, depth) for w in self.ranks]
        return plan, address, refs

    def version(self, timeout_s: float) -> int:
        return wait(self.ranks[0].version.remote(), "learner version", timeout_s)

    def probe(self, token_ids: list[int], timeout_s: float) -> list[float]:
        """Rank 0's log-probs of ``token_ids[1:]``; every rank runs it (under ZeRO-3 the gather is collective)."""
        return wait([w.probe_logprobs.remote(token_ids) for w in self.ranks], "learner probe", timeout_s)[0]

    def save(self, directory: str, client_state: dict) -> None:
        wait([w.save.remote(directory, client_state) for w in self.ranks], "learner checkpoint", self.cfg.timeout_s)

    def load(self, directory: str) -> dict:
        return wait([w.load.remote(directory) for w in self.ranks], "learner restore", self.cfg.timeout_s)[0]

    def save_pretrained(self, directory: str) -> None:
        wait([w.save_pretrained.remote(directory) for w in self.ranks], "export HF checkpoint", self.cfg.timeout_s)
