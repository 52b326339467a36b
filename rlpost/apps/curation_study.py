"""Analyst experiments: the curation study (`rlpost experiment curation ...`)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rlpost.common.config import load_config
from rlpost.rl.config import RunConfig

# What the report reads of a finished run (``rlpost.curation.report.load_run``), and round 0's scores for the later
# arms of its seed: kilobytes, where the run folder with its checkpoints and rollouts holds megabytes.
RECORD = ("summary.json", "metrics.jsonl", "curation")


def run_curation_study(configs: list[str], seeds: int, out: str, overrides: list[str] = (), log=print,
                       report_only: bool = False, audit_seeds: int = 1, results: str | None = None) -> Path:
    """Run every arm config × seed from the same start checkpoint, then write the study report into ``out``.

    Seed-major (every arm of seed 0, then seed 1, ...), so a study stopped early holds complete paired seeds; a run
    whose folder already holds its final evaluation is kept, so a restarted study goes on where it stopped. The first
    ``audit_seeds`` seeds also run the online-amortised arm once more with ``curation.audit`` (a full uncharged
    re-score each round: how well the amortised table agrees with fresh scores). ``report_only``: write the report
    from the finished runs without training. ``results``: a folder (e.g. under version control) that receives each
    finished run's record (``RECORD``) and the report; a run whose record is there counts as finished, so a study
    split over machines resumes from the records alone.
    """
    from rlpost.curation.report import write_study_report

    arms = [load_config(RunConfig, path, list(overrides)) for path in configs]
    names = [cfg.curation.arm for cfg in arms]
    if len(set(names)) != len(names):
        raise ValueError(f"configs: two arms have the same curation schedule ({names}); one config per arm")
    study = Path(out)
    study.mkdir(parents=True, exist_ok=True)
    kept = Path(results) if results else study
    kept.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[Path]] = {name: [] for name in names}
    round0: dict[tuple, Path] = {}  # (seed, round-0 inputs) -> the first finished run of that seed that scored them
    jobs = [(seed, cfg, f"{'audit-' * audit}{cfg.curation.arm}-seed{seed}", audit)
            for seed in range(seeds)
            for audit in ((False, True) if seed < audit_seeds else (False,))
            for cfg in arms if not audit or cfg.curation.amortised]
    prep, t0 = None, time.time()
    for seed, cfg, run_name, audit in jobs:
        c = cfg.curation
        key = (seed, c.pool_size, c.group_size, c.score, c.beta)
        run_dir, record = study / run_name, _record_dir(kept, study, run_name)
        if not _finished(record) and _finished(run_dir):
            _keep_record(run_dir, record)
        if not _finished(record) and not report_only:
            if prep is None:
                from rlpost.apps.pipeline import prepare

                prep = prepare(arms[0], max(a.trainer.eval_scenarios for a in arms), log)
            # Every scored arm of a seed scores the same pool with the same start policy and sampling seeds at round
            # 0: the later ones adopt the first one's scores (and are charged its cost) instead of generating the
            # identical round again.
            run_cfg = cfg.model_copy(update={"out": str(run_dir), "name": f"{cfg.name}{'-audit' * audit}-s{seed}",
                                             "init_checkpoint": prep.checkpoint}, deep=True)
            run_cfg.trainer.seed = seed
            run_cfg.curation.audit = audit
            run_cfg.curation.reuse_round0 = str(round0[key]) if c.scored and key in round0 else None
            log(f"[study] {run_dir.name} ({time.time() - t0:.0f} s so far; round 0 from "
                f"{run_cfg.curation.reuse_round0 or 'its own scoring'})")
            from rlpost.loop.train import train

            train(run_cfg, prep.checkpoint, prep.pool, prep.held_out[: cfg.trainer.eval_scenarios], log=log)
            _keep_record(run_dir, record)
        if _finished(record):
            if not audit:
                runs[c.arm].append(record)
            if c.scored:
                round0.setdefault(key, record)
    audits = [_record_dir(kept, study, name) for _, _, name, audit in jobs
              if audit and _finished(_record_dir(kept, study, name))]
    report = write_study_report(kept, runs, audits, planned_seeds=seeds)
    log(f"[study] {len(arms)} arms x {seeds} seeds in {time.time() - t0:.0f} s; report {report}")
    return report


def _record_dir(kept: Path, study: Path, run_name: str) -> Path:
    """A run's record: under ``kept``/runs when the study keeps records apart, else the run folder itself."""
    return study / run_name if kept == study else kept / "runs" / run_name


def _keep_record(run_dir: Path, record: Path) -> None:
    """Copy a finished run's record out of its run folder (nothing to do when they are the same folder)."""
    if record == run_dir or not _finished(run_dir):
        return
    record.mkdir(parents=True, exist_ok=True)
    for name in RECORD:
        source = run_dir / name
        if source.is_dir():
            shutil.copytree(source, record / name, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy2(source, record / name)


def _finished(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return summary.exists() and "after" in json.loads(summary.read_text())
