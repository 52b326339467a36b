"""Analyst experiments: the curation study (`rlpost experiment curation ...`)."""

from __future__ import annotations

import time
from pathlib import Path

from rlpost.common.config import load_config
from rlpost.rl.config import RunConfig


def run_curation_study(configs: list[str], seeds: int, out: str, overrides: list[str] = (), log=print) -> Path:
    """Run every arm config × seed from the same start checkpoint, then write the study report into ``out``."""
    from rlpost.apps.pipeline import prepare
    from rlpost.curation.report import write_study_report
    from rlpost.loop.train import train

    arms = [load_config(RunConfig, path, list(overrides)) for path in configs]
    study = Path(out)
    study.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[Path]] = {}
    prep = prepare(arms[0], max(cfg.trainer.eval_scenarios for cfg in arms), log)
    t0 = time.time()
    for seed in range(seeds):
        for cfg in arms:
            arm = cfg.curation.schedule
            run_dir = study / f"{arm}-seed{seed}"
            run_cfg = cfg.model_copy(update={"out": str(run_dir), "name": f"{cfg.name}-s{seed}",
                                             "init_checkpoint": prep.checkpoint}, deep=True)
            run_cfg.trainer.seed = seed
            log(f"[study] {arm} seed {seed} -> {run_dir} ({time.time() - t0:.0f} s so far)")
            train(run_cfg, prep.checkpoint, prep.pool, prep.held_out[: cfg.trainer.eval_scenarios], log=log)
            runs.setdefault(arm, []).append(run_dir)
    report = write_study_report(study, runs)
    log(f"[study] {len(arms)} arms x {seeds} seeds in {time.time() - t0:.0f} s; report {report}")
    return report
