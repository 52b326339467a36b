"""A mistake in the input ends every command with one short message naming the culprit, exit status 2 and no
traceback (``--debug`` shows it), before anything heavy starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rlpost.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")
DEAD_REDIS = "redis://127.0.0.1:1/0"  # port 1: nothing listens there


@pytest.fixture(autouse=True)
def _restore_environment():
    """Commands set the CPU runtime's variables (threads, loopback) in this process; later tests get the old ones."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _fails(capsys, argv: list[str], *culprits: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err + captured.out
    assert 1 <= len(err.splitlines()) <= 3, err
    for culprit in culprits:
        assert culprit in err, err
    return err


@pytest.mark.parametrize("argv, culprits", [
    (["train", TINY, "trainer.steps=-1"], ["trainer.steps"]),
    (["train", TINY, "trainer.stepz=3"], ["trainer.stepz"]),
    (["train", "/nonexistent/run.yaml"], ["/nonexistent/run.yaml"]),
    (["train", TINY, "init_checkpoint=/nonexistent/ckpt"], ["init_checkpoint", "/nonexistent/ckpt"]),
    (["train", TINY, "model.size=null", "model.path=/nonexistent/hf"], ["model.path", "/nonexistent/hf"]),
    (["train", TINY, f"redis_url={DEAD_REDIS}"], ["redis_url", DEAD_REDIS, "redis_url: null"]),
    (["demo", "trainer.steps=0"], ["trainer.steps"]),
    (["demo", TINY, f"redis_url={DEAD_REDIS}"], ["redis_url", DEAD_REDIS]),
    (["sft"], ["configs/tiny.yaml"]),
    (["sft", TINY, "sft.steps=0"], ["sft.steps"]),
    (["sft", TINY, "sft.data=/nonexistent/data"], ["/nonexistent/data", "rlpost data build"]),
    (["sft", TINY, "model.size=null", "model.path=/nonexistent/hf"], ["model.path", "/nonexistent/hf"]),
    (["sft", "--task", "judge", "judge.size=huge"], ["judge.size"]),
    (["sft", "--task", "judge", "judge.data=/nonexistent/data"], ["/nonexistent/data"]),
    (["eval", "/nonexistent/ckpt"], ["checkpoint", "/nonexistent/ckpt", "rlpost sft"]),
    (["data", "stats", "/nonexistent/data"], ["/nonexistent/data", "rlpost data build"]),
    (["data", "check", "/nonexistent/data"], ["/nonexistent/data"]),
    (["experiment", "curation", "/nonexistent/arm.yaml"], ["/nonexistent/arm.yaml"]),
    (["experiment", "curation", TINY, "--set", "trainer.steps=-1"], ["trainer.steps"]),
    (["experiment", "curation", TINY, "--set", f"redis_url={DEAD_REDIS}"], ["redis_url"]),
    (["experiment", "table9", "--config", "/nonexistent/t9.yaml"], ["/nonexistent/t9.yaml"]),
    (["experiment", "table9", "--config", TINY, "--arms", "nope"], ["--arms", "nope"]),
    (["rewards", "check", "trajectory_quality", "--param", "novalue"], ["--param", "novalue"]),
])
def test_user_errors_are_one_short_message(capsys, argv, culprits):
    err = _fails(capsys, argv, *culprits)
    assert err.startswith("rlpost " + argv[0])  # names the command that failed


def test_eval_names_a_checkpoint_without_config_json_and_a_missing_dataset(capsys, tmp_path):
    _fails(capsys, ["eval", str(tmp_path)], str(tmp_path), "no config.json")
    (tmp_path / "config.json").write_text("{}")  # the data is read before the weights: no model is loaded here
    _fails(capsys, ["eval", str(tmp_path), "--data", "/nonexistent/data"], "/nonexistent/data")


@pytest.mark.parametrize("argv, culprit", [
    (["data", "build", "--nets", "nope"], "nope"),
    (["data", "build", "--n", "0"], "--n"),
    (["train", TINY, "--no-such-flag"], "--no-such-flag"),
])
def test_usage_errors_exit_2_in_one_line(capsys, argv, culprit):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and culprit in err and "--help" in err


def test_debug_shows_the_traceback(capsys):
    assert main(["--debug", "train", TINY, "trainer.steps=-1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "ConfigError" in err and "trainer.steps" in err


def test_program_errors_keep_their_traceback(monkeypatch):
    import rlpost.apps.pipeline as pipeline

    def broken(*_args, **_kwargs):
        raise KeyError("a bug, not an input mistake")

    monkeypatch.setattr(pipeline, "prepare", broken)
    with pytest.raises(KeyError):
        main(["train", TINY])


def test_the_installed_command_prints_at_most_three_lines():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "rlpost.cli", "train", TINY, "trainer.steps=-1"], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 3 and "trainer.steps" in done.stderr, done.stderr


def test_an_unreachable_ray_address_is_a_user_error_at_once():
    from rlpost.actors.placement import connect_ray
    from rlpost.common.errors import UnreachableServiceError
    from rlpost.rl.config import RunConfig

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UnreachableServiceError, match=rf"ray_address: no Ray cluster answers at '127.0.0.1:{port}'"):
        connect_ray(RunConfig(ray_address=f"127.0.0.1:{port}", ray_num_cpus=None))
