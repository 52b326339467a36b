"""The main job: data → SFT → GRPO → report, each stage skipped when its output already exists."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rlpost.common.errors import UnreachableServiceError
from rlpost.rl.config import RunConfig


def ensure_data(cfg: RunConfig, log=print) -> Path:
    """The scenario dataset at ``cfg.data.path``, built from the shipped SUMO networks if missing."""
    path = Path(cfg.data.path)
    if path.exists():
        return path
    from rlpost.scenarios.build import build_dataset

    log(f"[data] building {cfg.data.build_n} SUMO scenarios into {path}")
    report = build_dataset(path, cfg.data.build_n, cfg.data.build_nets, seed=cfg.trainer.seed)
    log(f"[data] done: {report.get('written', cfg.data.build_n)} scenarios")
    return path


def ensure_sft(cfg: RunConfig, log=print) -> str:
    """The policy checkpoint GRPO starts from: ``cfg.init_checkpoint``, or the SFT stage's output (trained if
    missing)."""
    if cfg.init_checkpoint:
        return cfg.init_checkpoint
    final = Path(cfg.sft.out) / "final"
    if (final / "config.json").exists():
        log(f"[sft] reusing {final}")
        return str(final)
    from rlpost.policy.sft import run_sft

    sft = cfg.sft.model_copy(update={"data": cfg.data.path})
    log(f"[sft] training {cfg.model.size or cfg.model.path} on {cfg.data.path} ({sft.steps} steps max, "
        f"{sft.max_minutes or '-'} min budget)")
    return str(run_sft(cfg.model, sft, log=log).checkpoint)


def check_redis(cfg: RunConfig) -> None:
    """A configured ``redis_url`` must answer now, not minutes later inside an actor (None: the run starts its own)."""
    from rlpost.storage.local_redis import is_reachable

    if cfg.redis_url is not None and not is_reachable(cfg.redis_url):
        raise UnreachableServiceError(f"redis_url: no Redis server answers at {cfg.redis_url}; start it or set "
                                      "redis_url: null (the run then starts its own)")


@dataclass
class Prepared:
    """What a GRPO run starts from: the policy checkpoint and the scenarios."""

    checkpoint: str
    pool: list  # the training split
    held_out: list  # the first ``eval_scenarios`` of the evaluation split


def prepare(cfg: RunConfig, eval_scenarios: int | None = None, log=print) -> Prepared:
    """Check the config against the machine, then make the data and the start checkpoint if missing and read the
    scenarios. ``eval_scenarios`` caps the held-out list (None: ``cfg.trainer.eval_scenarios``)."""
    from rlpost.scenarios.schema import read_scenarios

    cfg.preflight(need_data=False)  # the data may be built below; the rest must hold before a minute of SFT
    check_redis(cfg)
    data = ensure_data(cfg, log)
    checkpoint = ensure_sft(cfg, log)
    cap = cfg.trainer.eval_scenarios if eval_scenarios is None else eval_scenarios
    return Prepared(checkpoint, read_scenarios(data, cfg.data.train_split),
                    read_scenarios(data, cfg.data.eval_split)[:cap])


def critic_pair(cfg: RunConfig) -> tuple[str, str] | None:
    """(judge, rubric) component labels when the run has a ``reasoning_critic`` with backend judge and another with
    backend rubric (the rubric as a side metric): the report then shows their agreement."""
    backends = {s.component: s.params.get("backend", "rubric") for s in cfg.rewards.components
                if s.name == "reasoning_critic"}
    judge = next((c for c, b in backends.items() if b == "judge"), None)
    rubric = next((c for c, b in backends.items() if b == "rubric"), None)
    return (judge, rubric) if judge and rubric else None


def run_pipeline(cfg: RunConfig, log=print) -> Path:
    """Run every stage; returns the report path."""
    from rlpost.apps.report import write_report
    from rlpost.loop.train import train

    t0 = time.time()
    prep = prepare(cfg, log=log)
    t_sft = time.time()
    log(f"[grpo] {cfg.trainer.steps} steps x {cfg.trainer.scenarios_per_step} scenarios x G={cfg.rollout.group_size} "
        f"from {prep.checkpoint}; {len(prep.pool)} train / {len(prep.held_out)} held-out scenarios")
    summary = train(cfg, prep.checkpoint, prep.pool, prep.held_out, log=log)
    report = write_report(cfg.out, summary, {
        "config": cfg.name, "start checkpoint": prep.checkpoint, "data + SFT time": f"{t_sft - t0:.0f} s",
        "GRPO time": f"{time.time() - t_sft:.0f} s", "total": f"{time.time() - t0:.0f} s"}, critics=critic_pair(cfg))
    log(f"[report] {report}")
    return report
