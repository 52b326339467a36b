"""Analyst experiments: the curation study (`rlpost experiment curation ...`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rlpost.common.config import load_config
from rlpost.rl.config import RunConfig


def run_curation_study(configs: list[str], seeds: int, out: str, overrides: list[str] = (), log=print,
                       report_only: bool = False) -> Path:
    """Run every arm config × seed from the same start checkpoint, then write the study report into ``out``.

    Seed-major (every arm of seed 0, then seed 1, ...), so a study stopped early holds complete paired seeds; a run
    whose folder already holds its final evaluation is kept, so a restarted study goes on where it stopped.
    ``report_only``: write the report from the finished runs without training.
    """
    from rlpost.curation.report import write_study_report

    arms = [load_config(RunConfig, path, list(overrides)) for path in configs]
    names = [cfg.curation.arm for cfg in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"configs: two arms have the same curation schedule ({names}); one config per arm")
    study = Path(out)
    study.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[Path]] = {name: [] for name in names}
    prep = None
    t0 = time.time()
    for seed in range(seeds):
        for name, cfg in zip(names, arms):
            run_dir = study / f"{name}-seed{seed}"
            if not _finished(run_dir) and not report_only:
                if prep is None:
                    from rlpost.apps.pipeline import prepare

                    prep = prepare(arms[0], max(c.trainer.eval_scenarios for c in arms), log)
                _run_arm(cfg, seed, run_dir, prep, log, f"{time.time() - t0:.0f} s so far")
            if _finished(run_dir):
                runs[name].append(run_dir)
    report = write_study_report(study, runs)
    log(f"[study] {len(arms)} arms x {seeds} seeds in {time.time() - t0:.0f} s; report {report}")
    return report


def _run_arm(cfg: RunConfig, seed: int, run_dir: Path, prep, log, elapsed: str) -> None:
    from rlpost.loop.train import train

    run_cfg = cfg.model_copy(update={"out": str(run_dir), "name": f"{cfg.name}-s{seed}",
                                     "init_checkpoint": prep.checkpoint}, deep=True)
    run_cfg.trainer.seed = seed
    log(f"[study] {cfg.curation.arm} seed {seed} -> {run_dir} ({elapsed})")
    train(run_cfg, prep.checkpoint, prep.pool, prep.held_out[: cfg.trainer.eval_scenarios], log=log)


def _finished(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return summary.exists() and "after" in json.loads(summary.read_text())
