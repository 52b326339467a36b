"""The one typed config of a run (`rlpost train configs/tiny.yaml key=value ...`).

Every field has a one-line description; ``RunConfig`` validates the whole tree (divisibility, resources, paths,
reward names, the loss's layout needs) before any actor starts, with messages that name the field and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from rlpost.common.config import StrictModel
from rlpost.curation.schedule import CurationConfig
from rlpost.policy.config import EvalConfig, ModelConfig, SFTConfig
from rlpost.rewards.spec import RewardsConfig
from rlpost.rl.advantages import ADVANTAGES, AdvantageConfig
from rlpost.rl.losses import LOSSES, Layout, LossConfig

# The three AR1 rewards (docs/design.md §5): reasoning critic, CoC-action consistency, trajectory quality (safety).
# The built-ins are trusted, vectorised and fast: they run in the reward actor's process (no deadline, no
# process hop, which costs more than the scoring itself). Plugins and the LLM judge run in guarded workers with
# deadlines.
DEFAULT_REWARDS = [
    {"name": "reasoning_critic", "weight": 0.2, "in_process": True, "deadline_s": None},
    {"name": "coc_consistency", "weight": 1.0, "in_process": True, "deadline_s": None},
    {"name": "trajectory_quality", "weight": 1.0, "in_process": True, "deadline_s": None},
]


# The embedded tiny CPU defaults (`rlpost demo`): a 1.3M-parameter Qwen2 and an SFT stage that fits in
# minutes on 2 cores; see configs/tiny.yaml for the same values with comments.
# An odd bin count over a symmetric range puts zero control at a bin centre: with 256 bins zero sat on a bin edge,
# so every "drive straight" decoded to a half-bin curvature (a 2.7 m lateral drift at 15 m/s over 6.4 s) and the
# quantisation ADE of the expert itself was 0.16 m instead of 0.08 m.
TINY_MODEL = {"size": "small", "num_bins": 255, "accel_range": (-4.0, 4.0), "curvature_range": (-0.15, 0.15),
              "max_trace_tokens": 64}
TINY_SFT = {"out": "runs/tiny/sft", "steps": 900, "max_minutes": 8.0, "batch_size": 16, "lr": 3e-3,
            "warmup_steps": 40, "zero_stage": 1, "eval_every": 150, "threads": 1}


class DataConfig(StrictModel):
    """Where the scenarios come from (`rlpost data build` writes them)."""

    path: str = Field("data/scenarios", description="Parquet scenario dataset (file or folder)")
    train_split: str = Field("train", description="split GRPO samples prompts from")
    eval_split: str = Field("val", description="held-out split for before/after evaluation")
    build_n: int = Field(1000, ge=1, description="scenarios `rlpost demo` builds when the dataset is missing")
    build_nets: list[str] | None = Field(
        None, description="networks `rlpost demo` builds from (None: the builder's default set)")


class PlacementConfig(StrictModel):
    """Where one role's actors go on a cluster: one placement group per role, reserved before any actor starts."""

    strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Ray placement strategy of the role's bundles (PACK: few nodes; SPREAD: many; STRICT_*: "
                            "exactly one node / one node each)")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="custom resources each actor of the role reserves, pinning it to nodes that declare them "
                    "(`ray start --resources '{\"learner_node\": 2}'`)")
    labels: dict[str, str] = Field(
        default_factory=dict, description="node labels the role's nodes must carry (`ray start --labels k=v`)")

    @field_validator("resources")
    @classmethod
    def _custom_only(cls, resources: dict[str, float]) -> dict[str, float]:
        for key, value in resources.items():
            if key in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ValueError(f"{key!r}: set it with the role's num_cpus / num_gpus, not as a custom resource")
            if value <= 0:
                raise ValueError(f"{key!r}: a reserved amount must be > 0, got {value}")
        return resources


class RuntimeConfig(StrictModel):
    """What a site overrides about the processes of a run (the deployment itself follows from ``ray_address``:
    loopback pinning only for a local Ray rlpost starts; a cluster keeps its nodes' addresses)."""

    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables of every actor, over rlpost's own (e.g. NCCL_* "
                                          "settings, HF_HOME)")
    network_interface: str | None = Field(
        None, description="network interface gloo and NCCL use between learner ranks (GLOO_SOCKET_IFNAME / "
                          "NCCL_SOCKET_IFNAME; None: their own choice)")
    placement_timeout_s: float = Field(
        120.0, gt=0, description="wait for placement that fits the cluster's nodes but not their free resources "
                                 "(a plan the nodes cannot hold fails at once)")
    node_wait_s: float = Field(
        600.0, gt=0, description="how long a restartable actor whose node died may wait for a node with room")


class RolloutConfig(StrictModel):
    """Rollout generation in vLLM (docs/design.md §6: G = 12, temperature 0.6, top-p 0.98 in the public recipe)."""

    num_workers: int = Field(1, ge=1, description="rollout actors, each with its own vLLM engine")
    group_size: int = Field(8, ge=2, description="G: rollouts per scenario (a group); GRPO needs >= 2")
    temperature: float = Field(0.6, gt=0, description="sampling temperature")
    top_p: float = Field(0.98, gt=0, le=1, description="nucleus sampling mass")
    kv_cache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE per engine [GiB] (CPU builds)")
    in_process: bool = Field(
        True,
        description="run vLLM's engine core in the actor's process (fast start; tensors pass directly on weight sync)")
    num_cpus: float = Field(
        0.5, gt=0, description="Ray CPUs reserved per rollout actor (fractional lets actors share cores)")
    num_gpus: float = Field(0.0, ge=0, description="Ray GPUs per rollout actor (GPU clusters: 1 per vLLM engine)")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1,
        description="share of its GPU's memory a vLLM engine takes (GPU engines only; lower it when a learner rank "
                    "shares the GPU)")
    timeout_s: float = Field(
        600.0, gt=0, description="deadline for one generate call; past it the run stops with the actor named")
    max_batched_tokens: int = Field(
        16384, ge=512,
        description="vLLM tokens per scheduler step (prompts are prefilled whole; >= the model's context)")
    placement: PlacementConfig = Field(default_factory=PlacementConfig, description="where the engines go")


class LearnerConfig(StrictModel):
    """The DeepSpeed learner (docs/design.md §6 recipe: AdamW lr 2e-6, wd 0.01, clip 1.0; tiny models need a larger
    lr)."""

    num_ranks: int = Field(1, ge=1, description="data-parallel learner ranks (Ray actors, gloo on CPU / NCCL on GPU)")
    zero_stage: Literal[0, 1, 2, 3] = Field(1, description="DeepSpeed ZeRO stage")
    lr: float = Field(
        1e-4, gt=0,
        description="AdamW learning rate (the public recipe uses 2e-6 on 0.5B+ models; "
                    "the 1.3M tiny policy moves at 1e-4)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip")
    micro_batch: int = Field(16, ge=1, description="sequences per forward/backward on one rank")
    loss: LossConfig = Field(default_factory=lambda: LOSSES.build("ppo_clip"),
                             description="policy loss {name: <registered in rlpost.rl.losses>, <its fields>}")
    advantage: AdvantageConfig = Field(
        default_factory=lambda: ADVANTAGES.build("grpo"),
        description="advantage estimator {name: <registered in rlpost.rl.advantages>, <its fields>}")
    num_cpus: float = Field(1.0, gt=0, description="Ray CPUs reserved per learner rank")
    num_gpus: float = Field(
        0.0, ge=0, description="Ray GPUs per learner rank (GPU clusters: 1; NCCL is used when CUDA is present)")
    threads: int = Field(1, ge=1, description="torch threads per learner rank")
    activation_checkpointing: bool = Field(
        False, description="recompute each decoder layer's activations in the backward (HF gradient checkpointing): "
                           "activation memory of one layer instead of all, for about one more forward of compute")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="learner forward/backward: fp32, or bf16 autocast over fp32 master weights and optimizer "
                            "(CPUs without native bf16 run it slower: bench/results/learner_precision.md)")
    expert: Literal["frozen", "flow"] = Field(
        "frozen",
        description="the flow-matching expert during RL: frozen (behind the stop-gradient, as in AR1) or flow "
                    "(keeps training by its flow loss on on-policy prefixes)")
    expert_lr: float = Field(1e-3, gt=0, description="expert: 'flow': AdamW learning rate of the expert")
    timeout_s: float = Field(600.0, gt=0, description="deadline for one update or checkpoint call")
    placement: PlacementConfig = Field(
        default_factory=PlacementConfig, description="where the ranks go (gang-scheduled: all or none)")


class SyncConfig(StrictModel):
    """Learner -> rollout weight sync."""

    bucket_mb: float = Field(64.0, gt=0, description="bucket size of the weights message [MiB]")
    verify_probe: bool = Field(
        True, description="after each sync compare rollout-engine and learner log-probs on a probe sequence")
    probe_tolerance: float = Field(1e-3, gt=0, description="max mean |logp gap| on the probe; larger fails the sync")
    timeout_s: float = Field(120.0, gt=0, description="deadline for one sync; past it the run stops naming the worker")
    transport: Literal["object_store", "stream"] = Field(
        "object_store", description="object_store: one whole-model message via Ray; stream: buckets broadcast over a "
        "process group (gloo on CPU, NCCL on CUDA), packing, transfer and loading overlapped (needs in-process vLLM)")
    stream_depth: int = Field(
        2, ge=1, description="stream: buckets in flight per side (sender buffers, receiver queue); memory = depth x "
        "bucket_mb per side")


class TrainerConfig(StrictModel):
    """The loop's schedule."""

    steps: int = Field(20, ge=1, description="GRPO steps (one optimizer step each)")
    scenarios_per_step: int = Field(
        8, ge=1, description="scenarios (groups) per step; batch = scenarios_per_step * group_size")
    staleness: int = Field(
        0, ge=0, le=1, description="0: on-policy; 1: generation of step k+1 overlaps the update of step k")
    eval_every: int = Field(0, ge=0, description="steps between held-out evaluations (0: only before and after)")
    eval_scenarios: int = Field(64, ge=1, description="held-out scenarios per evaluation")
    eval_samples: int = Field(4, ge=1, description="samples per held-out scenario (rewards are averaged over them)")
    checkpoint_every: int = Field(10, ge=1, description="steps between checkpoints (model, optimizer, sampler, RNG)")
    seed: int = Field(0, description="run seed (scenario order, sampling seeds)")
    max_restarts: int = Field(3, ge=0, description="restarts Ray grants each rollout engine, reward worker and curator")


class RunConfig(StrictModel):
    """The root config of a run: data -> SFT -> GRPO -> report."""

    name: str = Field("tiny", description="run name (Redis key prefix, output folder name)")
    out: str = Field("runs/tiny", description="output folder: checkpoints, Parquet logs, TensorBoard, report")
    ray_address: str | None = Field(None, description="Ray cluster address (None: start a local Ray)")
    ray_num_cpus: int | None = Field(2, ge=1, description="CPUs of a local Ray (None: all)")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="site overrides of the processes")
    redis_url: str | None = Field(None, description="Redis URL (None: start a local server for the run)")
    init_checkpoint: str | None = Field(
        None, description="policy checkpoint GRPO starts from (None: the SFT stage's output)")
    data: DataConfig = Field(default_factory=DataConfig, description="scenario data")
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(**TINY_MODEL), description="the policy model")
    sft: SFTConfig = Field(default_factory=lambda: SFTConfig(**TINY_SFT), description="supervised fine-tuning stage")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation settings")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="rollout generation")
    rewards: RewardsConfig = Field(default_factory=lambda: RewardsConfig(components=DEFAULT_REWARDS),
                                   description="reward components and weights")
    learner: LearnerConfig = Field(default_factory=LearnerConfig, description="the DeepSpeed learner")
    sync: SyncConfig = Field(default_factory=SyncConfig, description="weight sync")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="the loop's schedule")
    curation: CurationConfig = Field(default_factory=CurationConfig, description="scenario curation schedule")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is not None:
            parsed = urlparse(url)
            if parsed.scheme not in ("redis", "rediss", "unix") or not (parsed.hostname or parsed.path):
                raise ValueError(f"must look like redis://host:port/db (or rediss://, unix://), got {url!r}; "
                                 "leave it null to start a local server")
        return url

    def preflight(self, need_data: bool = True) -> None:
        """Checks that touch the filesystem and the reward registry, run before any actor starts (the model
        validators above are pure, so example configs for other machines still load)."""
        problems = []
        if self.init_checkpoint is not None and not (Path(self.init_checkpoint) / "config.json").is_file():
            problems.append(f"init_checkpoint: {self.init_checkpoint!r} is not a checkpoint folder (no config.json); "
                            "point it at an SFT output such as runs/sft_15min/final, or set null to run SFT")
        if (self.learner.expert == "flow" and self.init_checkpoint is not None
                and (Path(self.init_checkpoint) / "config.json").is_file()
                and not (Path(self.init_checkpoint) / "action_expert" / "config.json").is_file()):
            problems.append(f"learner.expert: 'flow' trains the action expert, but {self.init_checkpoint!r} has none "
                            "(action_expert/); use a checkpoint from SFT with model.expert.enabled=true, or set "
                            "learner.expert=frozen")
        if self.init_checkpoint is None and self.model.path is not None:  # the SFT stage starts from it
            from rlpost.common.errors import UserError
            from rlpost.policy.model import check_model_path

            try:
                check_model_path(self.model.path)
            except UserError as exc:
                problems.append(str(exc))
        reuse = self.curation.reuse_round0
        if reuse is not None:
            from rlpost.curation.rounds import round0_path

            if not round0_path(reuse).is_file():
                problems.append(f"curation.reuse_round0: {reuse!r} holds no round 0 ({round0_path(reuse)}); point "
                                "it at a finished run of the same seed and pool, or set null to score round 0")
        if need_data and not Path(self.data.path).exists():
            problems.append(f"data.path: {self.data.path!r} does not exist; build it with `rlpost data build --out "
                            f"{self.data.path}` or run `rlpost demo`, which builds it")
        # Params too: a typo there would otherwise give every sample status error, the run training on fallbacks.
        problems += self.rewards.problems()
        if problems:
            from rlpost.common.config import ConfigError

            raise ConfigError("config cannot run:\n  " + "\n  ".join(problems))

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        batch = self.trainer.scenarios_per_step * self.rollout.group_size
        per_rank, rest = divmod(batch, self.learner.num_ranks)
        if rest:
            raise ValueError(
                f"learner.num_ranks: the batch of {batch} sequences (trainer.scenarios_per_step x rollout.group_size) "
                f"must split evenly over {self.learner.num_ranks} ranks"
            )
        if per_rank % self.learner.micro_batch and self.learner.micro_batch < per_rank:
            raise ValueError(
                f"learner.micro_batch: {self.learner.micro_batch} must divide the {per_rank} sequences per rank"
            )
        self.learner.loss.check_layout(Layout(group_size=self.rollout.group_size, num_ranks=self.learner.num_ranks,
                                              per_rank=per_rank, micro_batch=self.learner.micro_batch))
        if self.curation.amortised and self.curation.group_size != self.rollout.group_size:
            # A KL over a G-way softmax grows with G: training-step scores (G = rollout.group_size) and round scores
            # (curation.group_size) would rank on different scales in one table.
            raise ValueError(
                f"curation.group_size: amortised scores mix training groups (rollout.group_size = "
                f"{self.rollout.group_size}) with re-scored ones, so both must be equal; got {self.curation.group_size}"
            )
        if self.sync.transport == "stream" and not self.rollout.in_process:
            raise ValueError("sync.transport: 'stream' loads buckets into vLLM from a live iterator, which needs "
                             "rollout.in_process=true; set it, or sync.transport=object_store")
        if self.ray_address is None and self.ray_num_cpus is not None:
            need = self.rollout.num_workers * self.rollout.num_cpus + self.learner.num_ranks * self.learner.num_cpus
            if need > self.ray_num_cpus:
                raise ValueError(
                    f"ray_num_cpus: actors reserve {need} CPUs (rollout.num_workers x rollout.num_cpus + "
                    f"learner.num_ranks x learner.num_cpus) but the local Ray has {self.ray_num_cpus}; lower the "
                    f"reservations or raise ray_num_cpus"
                )
        return self
