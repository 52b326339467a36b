"""The pure parts of the scale ladder (bench/_scale.py): rung parameter counts from their shapes (checked against
transformers' Qwen2 on the meta device, so no weights are built), the FLOP formulas, the log-log slope fit and its
extrapolation, the split-sync metric names and the merge of a new invocation's runs."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _scale import (  # noqa: E402
    QWEN25_7B,
    RUNGS,
    all_planned,
    fit_linear,
    fit_loglog,
    generation_flops,
    learner_flops,
    matmul_flops,
    merge,
    param_count,
    planned_runs,
    run_key,
    sync_part,
    sync_split,
)


def test_published_qwen25_counts():
    """Qwen2.5-0.5B and -7B as published: 494,032,768 and 7,615,616,512 parameters."""
    assert param_count(RUNGS["0.5B"])["total"] == 494_032_768
    assert param_count(RUNGS["0.5B"])["embedding"] == 151_936 * 896
    assert param_count(QWEN25_7B)["total"] == 7_615_616_512


@pytest.mark.parametrize("name", list(RUNGS))
def test_rung_counts_match_transformers_qwen2_without_weights(name):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    rung = RUNGS[name]
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(**rung.qwen2_config()))
    assert sum(p.numel() for p in model.parameters()) == param_count(rung)["total"]


def test_rungs_hit_their_nominal_sizes_with_heads_vllm_serves():
    nominal = {"1M": 1e6, "6M": 6e6, "30M": 30e6, "125M": 125e6, "0.5B": 0.5e9}
    for name, rung in RUNGS.items():
        assert abs(param_count(rung)["total"] / nominal[name] - 1) < 0.1, name
        assert rung.head_dim in (32, 64, 80, 96, 112, 128) and rung.hidden % rung.heads == 0
        assert rung.heads % rung.kv_heads == 0
    r = RUNGS["0.5B"]
    assert (r.hidden, r.layers, r.heads, r.kv_heads, r.intermediate, r.vocab, r.tied) == (
        896, 24, 14, 2, 4864, 151936, True)


def test_flop_formulas():
    assert learner_flops(1_000_000, 1000) == 6e9
    assert generation_flops(1_000_000, 1000) == 2e9
    assert matmul_flops(2, 3, 4) == 48


def test_loglog_fit_recovers_a_power_law_and_extrapolates():
    xs = [1e6, 6e6, 3e7, 1.25e8]
    fit = fit_loglog(xs, [3.0 * x ** 0.8 for x in xs])
    assert fit.slope == pytest.approx(0.8) and fit.r2 == pytest.approx(1.0) and fit.n_points == 4
    assert fit.predict(7e9) == pytest.approx(3.0 * 7e9 ** 0.8)
    noisy = fit_loglog(xs, [1.0, 2.5, 7.0, 30.0])
    assert 0 < noisy.r2 < 1 and noisy.slope == pytest.approx(
        math.log(30.0 / 1.0) / math.log(1.25e8 / 1e6), rel=0.2)


def test_fit_needs_two_positive_points():
    assert fit_loglog([1e6], [1.0]) is None
    assert fit_loglog([1e6, 2e6], [1.0, None]) is None
    assert fit_loglog([1e6, 2e6, 4e6], [1.0, 0.0, 4.0]).n_points == 2


def test_linear_fit_gives_base_and_bytes_per_parameter():
    base, per_param = fit_linear([1e6, 6e6, 3e7, 1.25e8], [5e8 + 20 * x for x in (1e6, 6e6, 3e7, 1.25e8)])
    assert base == pytest.approx(5e8) and per_param == pytest.approx(20)
    assert fit_linear([1e6, 1e6], [1.0, 2.0]) is None
    assert fit_linear([1e6, 2e6, 3e6], [1.0, None, 5.0]) == pytest.approx((-1.0, 2e-6))


def test_split_sync_metrics_are_picked_by_name():
    row = {"time/sync_s": 0.5, "sync_ms": 120.0, "sync_bytes": 4096, "sync_probe_gap": 1e-6, "version": 3,
           "sync/export_ms": 30.0, "time/sync_transfer_s": 0.2, "sync_integrity_ms": 5.0, "sync/load_s": 0.1,
           "sync/buckets": 4, "time/learn_s": 2.0}
    split = sync_split(row)
    assert split == pytest.approx({"sync/export_ms": 0.03, "time/sync_transfer_s": 0.2, "sync_integrity_ms": 0.005,
                                   "sync/load_s": 0.1})
    assert [sync_part(k) for k in split] == ["export", "transfer", "integrity", "load"]
    assert sync_part("sync/checksum_ms") == "integrity" and sync_part("sync/ack_ms") is None


def test_planned_runs_and_merge():
    assert planned_runs(["1M", "6M"], zero_matrix=True) == [("1M", 1, 1), ("6M", 1, 1)]
    matrix = planned_runs(["125M", "0.5B"], zero_matrix=True)
    assert len(matrix) == 2 + 2 * 5 and ("0.5B", 3, 2) in matrix and matrix[:2] == [("125M", 1, 1), ("0.5B", 1, 1)]
    assert len(all_planned()) == 5 + 2 * 5

    first = merge({}, {run_key("30M", 1, 1): {"v": 1}, run_key("1M", 1, 1): {"v": 1}})
    first["invocations"] = [{"id": 1}]
    assert list(first["runs"]) == ["1M/zero1/ranks1", "30M/zero1/ranks1"]  # ladder order
    assert "0.5B/zero3/ranks2" in first["missing"] and "1M/zero1/ranks1" not in first["missing"]
    second = merge(first, {run_key("1M", 1, 1): {"v": 2}, run_key("0.5B", 2, 2): {"v": 2}})
    assert second["runs"]["1M/zero1/ranks1"] == {"v": 2} and second["runs"]["30M/zero1/ranks1"] == {"v": 1}
    assert second["invocations"] == [{"id": 1}] and "0.5B/zero2/ranks2" not in second["missing"]
    done = merge({}, {k: {} for k in all_planned()})
    assert done["missing"] == []
