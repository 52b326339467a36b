"""The names of a run's per-step scalars (``metrics.jsonl``, TensorBoard): written by the loop, read by the
reports, the experiments and the benchmarks. Families are functions of a component or key name."""

from __future__ import annotations

REWARD = "reward"  # mean total reward of the step's samples
DECODED_RATE = "decoded_rate"  # share of samples whose trajectory decoded
ADE = "ade"  # mean ADE@6.4 s [m] over samples with a trajectory
LOSS = "loss"
GRAD_NORM = "grad_norm"
SAMPLER_LOGP_GAP = "sampler_logp_gap"  # mean |sampler log-prob − learner log-prob| per completion token
EXPERT_FLOW_LOSS = "expert/flow_loss"
ZERO_VARIANCE_GROUPS = "zero_variance_groups"
GROUPS = "groups"
SYNC_VERSION = "version"
SYNC_MS = "sync_ms"
SYNC_BYTES = "sync_bytes"
SYNC_PROBE_GAP = "sync_probe_gap"
SYNC_EXPORT_MS = "sync_export_ms"  # learner: gather + pack (actors/sync.py defines each stage)
SYNC_INTEGRITY_MS = "sync_integrity_ms"  # checksums, sender + slowest receiver
SYNC_TRANSFER_MS = "sync_transfer_ms"  # moving the bytes (object store, or the stream's collectives)
SYNC_LOAD_MS = "sync_load_ms"  # the slowest engine's in-place load
STALENESS_MAX = "staleness/max"
TRAIN_TOKENS = "tokens/train"  # cumulative tokens (prompt + completion) of the training steps' rollouts

STEP_S = "time/step_s"  # one loop iteration, generation wait to sync
GENERATE_WAIT_S = "time/generate_wait_s"
SCORE_S = "time/score_s"
LEARN_S = "time/learn_s"
SYNC_S = "time/sync_s"

CURATION_ROUND = "curation/round"  # id of the last adopted round
CURATION_ROUND_USED = "curation/round_used"  # the round whose selection this step's scenarios came from
CURATION_ROUNDS = "curation/rounds"
CURATION_FAILED_ROUNDS = "curation/failed_rounds"
CURATION_SCORE_MEAN = "curation/score_mean"
CURATION_WALL_S = "curation/wall_s"  # cumulative
CURATION_TOKENS = "curation/tokens"  # cumulative
CURATION_FLOPS = "curation/flops"  # cumulative
CURATION_TOKEN_SHARE = "curation/token_share"  # curation's share of all generated tokens so far
CURATION_RECURATION_TOKENS = "curation/recuration_tokens"  # cumulative, rounds after round 0 (the one-off scoring)
CURATION_RECURATION_SHARE = "curation/recuration_token_share"  # those tokens' share of training + those tokens


def reward_of(component: str) -> str:
    """Mean value of one reward component."""
    return f"reward/{component}"


def ok_rate_of(component: str) -> str:
    """Share of samples whose component status is ok."""
    return f"ok_rate/{component}"


def curation_stat(key: str) -> str:
    """An amortised round's scalar (``rlpost.curation.amortised``): rescored, agreement_rescored, agreement_full,
    audit_tokens, age_mean, age_p50, age_p90, age_max, from_training."""
    return f"curation/{key}"


def restarts_of(role: str) -> str:
    return f"restarts/{role}"


def held_out(key: str) -> str:
    """A held-out evaluation scalar: ``eval/<key>`` for any of the step keys above (``eval/reward``, ...)."""
    return f"eval/{key}"


HELD_OUT_PREFIX = held_out("")
