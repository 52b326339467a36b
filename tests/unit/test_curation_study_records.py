"""The study keeps each finished run's record apart from its run folder and resumes from the records alone."""

import json

import pytest

from rlpost.apps import curation_study
from tests.unit.test_curation_report import fake_run

ARMS = ["configs/curation/none.yaml", "configs/curation/random.yaml"]


def finished_run(path, reward: float):
    fake_run(path, reward, {})
    (path / "summary.json").write_text(json.dumps({"before": {}, "after": {"reward": reward}}))
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "model.bin").write_bytes(b"\0" * 1024)  # what a record leaves behind


def test_records_resume_a_study_without_its_run_folders(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a recorded run was trained again")

    monkeypatch.setattr("rlpost.apps.pipeline.prepare", no_training)
    study, results = tmp_path / "study", tmp_path / "results"
    finished_run(study / "none-seed0", -4.0)  # seed 0 finished on this machine before records were kept
    finished_run(study / "random-seed0", -3.0)
    curation_study.run_curation_study(ARMS, 1, str(study), results=str(results), log=lambda *_: None)
    record = results / "runs" / "none-seed0"
    assert sorted(p.name for p in record.iterdir()) == ["metrics.jsonl", "summary.json"]  # no checkpoints
    # Seed 1 ran on another machine and left only its records: with no run folders at all, nothing is trained again.
    for name in ("none-seed1", "random-seed1"):
        finished_run(results / "runs" / name, -5.0)
    report = curation_study.run_curation_study(ARMS, 2, str(tmp_path / "elsewhere"), results=str(results),
                                               log=lambda *_: None)
    assert report.parent == results
    assert "| none | 2 |" in report.read_text() and "| random | 2 |" in report.read_text()


def test_an_unrecorded_run_is_trained(tmp_path, monkeypatch):
    class Trained(Exception):
        pass

    def prepare(*args, **kwargs):
        raise Trained

    monkeypatch.setattr("rlpost.apps.pipeline.prepare", prepare)
    finished_run(tmp_path / "results" / "runs" / "none-seed0", -4.0)
    with pytest.raises(Trained):  # random-seed0 has neither a record nor a run folder
        curation_study.run_curation_study(ARMS, 1, str(tmp_path / "study"), results=str(tmp_path / "results"),
                                          log=lambda *_: None)
