"""The curation study's report from synthetic run folders: tokens on the x axis, paired differences, the verdict."""

import json

import numpy as np
import pyarrow.parquet as pq

from rlpost.common import metric_names as M
from rlpost.curation.report import load_run, verdict, write_study_report
from rlpost.curation.rounds import CurationRound, RoundScores
from rlpost.storage.store import round_table


def fake_run(path, final_reward: float, selected_at: dict[int, list[str]], amortised: bool = False):
    """A 2-step run: evaluations before and after, 100 training tokens a step, 50 curation tokens a round."""
    path.mkdir(parents=True)
    rows = [{"step": -1, M.held_out(M.REWARD): -5.0, M.held_out("reward/coc_consistency"): 0.5}]
    for step in (0, 1):
        row = {"step": step, M.STEP_S: 2.0, M.TRAIN_TOKENS: 100 * (step + 1), M.CURATION_TOKENS: 50 * len(selected_at),
               M.CURATION_WALL_S: 1.0, M.CURATION_TOKEN_SHARE: 0.25, M.CURATION_RECURATION_SHARE: 0.05}
        if amortised and step == 1:
            row.update({M.CURATION_ROUND: 1, M.curation_stat("rescored"): 3, M.curation_stat("age_mean"): 1.5})
        rows.append(row)
    rows.append({"step": 2, M.held_out(M.REWARD): final_reward, M.held_out("reward/coc_consistency"): 0.6})
    (path / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    ids = ["a", "b", "c", "d"]
    for round_id, selected in selected_at.items():
        scores = RoundScores(ids, [4.0, 3.0, 2.0, 1.0] if round_id == 0 else [1.0, 2.0, 3.0, 4.0], [False] * 4,
                             [0.0] * 4, selected, {"count": 4})
        table = round_table(CurationRound(round_id, round_id, round_id, scores, 1.0, 50, 1.0))
        (path / "curation").mkdir(exist_ok=True)
        pq.write_table(table, path / "curation" / f"round={round_id:06d}.parquet")


def test_report_pairs_seeds_and_plots_against_tokens(tmp_path):
    runs = {"offline": [], "online-amortised": [], "none": []}
    for seed, (off, on) in enumerate([(-4.0, -3.0), (-4.2, -3.1), (-3.9, -2.8)]):
        fake_run(tmp_path / f"offline-seed{seed}", off, {0: ["a", "b"]})
        fake_run(tmp_path / f"amortised-seed{seed}", on, {0: ["a", "b"], 1: ["c", "d"]}, amortised=True)
        fake_run(tmp_path / f"none-seed{seed}", off - 0.5, {})
        runs["offline"].append(tmp_path / f"offline-seed{seed}")
        runs["online-amortised"].append(tmp_path / f"amortised-seed{seed}")
        runs["none"].append(tmp_path / f"none-seed{seed}")
    run = load_run(runs["online-amortised"][0])
    assert [e["tokens"] for e in run["evals"]] == [0, 300]  # before: nothing yet; after: 200 training + 100 curation
    text = write_study_report(tmp_path, runs).read_text()
    assert "Online (amortised) curation beats offline" in text  # +1.07 on every seed: separable
    assert "| online-amortised − offline | reward | 3 | +1.067 |" in text
    assert "| online-amortised | 1 | 0.00 ± 0.00 | 0.00 ± 0.00 | -1.00 ± 0.00 |" in text  # disjoint, reversed
    assert "| 1 | 3.00 | – | – | 1.50 | – | – | – |" in text  # the amortised round's scalars
    assert (tmp_path / "curves.png").stat().st_size > 0
    # An interim report pairs only the seeds both arms finished, and says so.
    runs["none"] = runs["none"][:2]
    text = write_study_report(tmp_path, runs, planned_seeds=5).read_text()
    assert "Interim report: 2 of 5 seeds finished for every arm" in text
    assert "| online-amortised − offline | reward | 3 |" in text and "| offline − none | reward | 2 |" in text


def test_verdict_gives_the_power_statement_when_arms_overlap(tmp_path):
    rng = np.random.default_rng(0)
    loaded = {"offline": [], "online-amortised": []}
    for seed in range(5):
        for arm in loaded:
            fake_run(tmp_path / f"{arm}-seed{seed}", -4.0 + rng.normal(0, 0.5), {0: ["a"]})
            loaded[arm].append(load_run(tmp_path / f"{arm}-seed{seed}"))
    text = verdict(loaded)
    assert text.startswith("Online vs offline cannot be separated here") and "with 80 % power" in text
