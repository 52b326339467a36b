"""The judge backend's strict grade parser and transports (no vLLM), and the judge's perturbation generator."""

from __future__ import annotations

import random

import pytest
from fake_openai import fake_openai

from rlpost.domain.coc import Direction, parse_trace
from rlpost.judge.critic import JudgeCritic, parse_grade
from rlpost.judge.data import PERTURBATIONS, make_pairs, perturb, references_from
from rlpost.judge.model import GRADE_TOKENS, JudgePromptEncoder, JudgeSpec, build_judge_tokenizer, judge_prompt
from rlpost.rewards.critic import reasoning_critic
from rlpost.rewards.critic_backends import CritiqueRequest, get_critic_backend
from rlpost.rewards.rubric import RubricCritic
from rlpost.rewards.synthetic import synthetic_scenarios
from rlpost.rewards.types import Completion


@pytest.fixture(scope="module")
def refs():
    return references_from(synthetic_scenarios(24, seed=3))


# --- strict grade parser ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, grade", [
    ("4", 4), (" 0\n", 0), ("5.", 5), ("Grade: 3", 3), ("grade 2/5", 2), ("GRADE=1", 1), ("**4**", 4), ("3 / 5", 3),
    ("<think>the decision matches, one factor is missing</think>\n4", 4),
])
def test_parse_grade_accepts_only_a_whole_grade(text, grade):
    assert parse_grade(text) == (grade, "")


@pytest.mark.parametrize("text", [
    "", "   ", "6", "-1", "10", "45", "4.5", "four", "3 or 4", "3\n4", "The grade is 4", "4 because it matches",
    "grade:", "<think>4", "<think>hmm</think>", "Grade: 4, maybe 5", "#$%^&", "٣", "4/6", None, 4, b"4",
])
def test_parse_grade_rejects_garbage(text):
    grade, why = parse_grade(text)
    assert grade is None and why


class _FakeTransport:
    name = "fake"

    def __init__(self, texts):
        self.texts = texts
        self.calls = []

    def complete(self, pairs):
        self.calls.append(list(pairs))
        return self.texts[: len(pairs)]


def _critic_with(texts) -> tuple[JudgeCritic, _FakeTransport]:
    critic = JudgeCritic(model="unused")
    critic.name, critic.version = "judge", "1"
    critic._transport = _FakeTransport(texts)
    return critic, critic._transport


def test_backend_maps_outputs_strictly_and_skips_missing_references():
    critic, transport = _critic_with(["5", "banana", "Grade: 2", "7"])
    reqs = [CritiqueRequest("a", "I will stop.", "I will stop."), CritiqueRequest("b", "x", "I will stop."),
            CritiqueRequest("c", "", ""), CritiqueRequest("d", "y", "I will stop."),
            CritiqueRequest("e", "z", "I will stop.")]
    grades = critic.grade(reqs)
    assert [g.status for g in grades] == ["ok", "unparseable", "error", "ok", "unparseable"]
    assert [g.grade for g in grades] == [5, 0, None, 2, 0]
    assert grades[1].details["judge_output"] == "banana" and grades[1].details["unparseable"] == "judge_output"
    assert len(transport.calls[0]) == 4  # the request without a reference never reaches the judge


def test_reasoning_critic_reward_with_judge_output_garbage(monkeypatch):
    scen = synthetic_scenarios(2, seed=1)
    comps = [Completion(s.scenario_id, 0, s.coc_trace, None) for s in scen]
    critic = get_critic_backend("judge", model="/nonexistent/judge-for-unit-test")
    monkeypatch.setattr(critic, "_transport", _FakeTransport(["3", "the candidate is fine"]))
    out = reasoning_critic(comps, scen, backend="judge", model="/nonexistent/judge-for-unit-test")
    assert [(r.status, r.value) for r in out] == [("ok", 0.6), ("unparseable", 0.0)]
    assert out[1].info["backend"] == "judge" and "not a single grade" in out[1].info["rationale"]


def test_backend_options_are_validated():
    with pytest.raises(ValueError, match="model"):
        JudgeCritic()
    with pytest.raises(ValueError, match="'m' has no judge.json"):
        JudgeCritic(model="m", endpoint="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="answer"):
        JudgeCritic(model="m", answer="essay")
    with pytest.raises(ValueError, match="engine"):
        JudgeCritic(model="m", engine="gpu")


# --- OpenAI-compatible endpoint transport (a fake server on loopback) --------------------------------------------
ANSWERS: dict = {"completions": []}  # the completions API's texts, cycled over the prompts (returned reversed)


def _respond(path: str, body: dict) -> dict:
    if path.endswith("/completions") and "chat" not in path:
        texts = ANSWERS["completions"]
        return {"choices": [{"index": i, "text": texts[i % len(texts)]} for i in range(len(body["prompt"]))][::-1]}
    return {"choices": [{"message": {"content": "4" if "stop" in body["messages"][1]["content"] else "no idea"}}]}


@pytest.fixture()
def fake():
    with fake_openai(_respond) as server:
        yield server


def test_endpoint_completions_batched_and_strict(fake):
    ANSWERS["completions"] = [" 5", "Grade: 1", "maybe 3"]
    critic = JudgeCritic(endpoint=fake.url, model_name="judge-x")
    reqs = [CritiqueRequest(str(i), f"cand {i}", "I will stop.") for i in range(3)]
    grades = critic.grade(reqs)
    assert [(g.grade, g.status) for g in grades] == [(5, "ok"), (1, "ok"), (0, "unparseable")]
    assert len(fake.seen) == 1  # one batched request
    path, body = fake.seen[0]
    assert path == "/v1/completions" and body["model"] == "judge-x" and len(body["prompt"]) == 3
    assert "5 = behaviour and causal reasoning fully consistent" in body["prompt"][0]
    assert body["prompt"][2].endswith("REFERENCE: I will stop.\nCANDIDATE: cand 2\nGrade:")


def test_endpoint_chat_one_request_per_sample(fake):
    critic = JudgeCritic(endpoint=fake.url, api="chat", max_concurrency=2)
    grades = critic.grade([CritiqueRequest("a", "c", "I will stop."), CritiqueRequest("b", "c", "I will turn left.")])
    assert [(g.grade, g.status) for g in grades] == [(4, "ok"), (0, "unparseable")]
    assert len(fake.seen) == 2 and all(p == "/v1/chat/completions" for p, _ in fake.seen)


def test_unreachable_endpoint_is_an_error_not_a_grade():
    scen = synthetic_scenarios(2, seed=2)
    comps = [Completion(s.scenario_id, 0, s.coc_trace, None) for s in scen]
    # A raise inside grade fails the batch: the guard's call_reward turns it into status error (never cached).
    from rlpost.rewards.guard import call_reward
    from rlpost.rewards.registry import resolve_reward

    out = call_reward(resolve_reward("reasoning_critic"), {"backend": "judge", "endpoint": "http://127.0.0.1:9/v1",
                                                           "timeout_s": 2.0}, comps, scen, 0.0, None)
    assert [r.status for r in out] == ["error", "error"] and "unreachable" in out[0].info["error"]


# --- perturbations and pairs -----------------------------------------------------------------------------------
def test_every_perturbation_writes_text_and_is_deterministic(refs):
    for kind in PERTURBATIONS:
        for i, ref in enumerate(refs[:8]):
            a = perturb(ref, random.Random(i), refs, kind)
            b = perturb(ref, random.Random(i), refs, kind)
            assert a == b and a[1] == kind and isinstance(a[0], str)


def test_decision_perturbations_change_what_they_say(refs):
    rng = random.Random(0)
    for ref in refs:
        text, _ = perturb(ref, rng, refs, "paraphrase")
        p = parse_trace(text)
        assert p.ok and p.decision == ref.decision and set(p.factors) == {f.category for f in ref.factors[:3]}
        p = parse_trace(perturb(ref, rng, refs, "wrong_longitudinal")[0])
        assert p.ok and p.decision.longitudinal != ref.decision.longitudinal
        p = parse_trace(perturb(ref, rng, refs, "wrong_lateral")[0])
        assert p.ok and p.decision.lateral != ref.decision.lateral
        if ref.decision.direction is not None:
            p = parse_trace(perturb(ref, rng, refs, "flip_direction")[0])
            assert p.decision.lateral == ref.decision.lateral and p.decision.direction != ref.decision.direction
            assert p.decision.direction in (Direction.LEFT, Direction.RIGHT)
        p = parse_trace(perturb(ref, rng, refs, "no_factors")[0])
        assert p.ok and p.decision == ref.decision  # (a decision phrase may itself name a factor: "follow the lead")
        p = parse_trace(perturb(ref, rng, refs, "drop_factors")[0])
        assert p.decision == ref.decision
    rubric = RubricCritic()  # factor errors lower the grade below a paraphrase's
    for kind in ("drop_factors", "replace_factors", "wrong_lateral", "garbage"):
        grades = [rubric.grade_one(CritiqueRequest(r.scenario_id, perturb(r, rng, refs, kind)[0], r.trace)).grade
                  for r in refs]
        assert sum(grades) / len(grades) < 4.5, kind


def test_pairs_are_labelled_by_the_rubric_and_cover_every_grade(refs):
    pairs = make_pairs(refs, 30, seed=7)
    assert len(pairs) == 30 * len(refs) and make_pairs(refs[:2], 5, seed=7) == make_pairs(refs[:2], 5, seed=7)
    rubric = RubricCritic()
    for p in pairs[::7]:
        g = rubric.grade_one(CritiqueRequest(p.scenario_id, p.candidate, p.reference))
        assert (g.grade, g.status) == (p.grade, p.status)
    assert {p.grade for p in pairs} == set(range(6))
    assert any(p.status == "unparseable" for p in pairs if p.kind == "garbage")
    assert {p.kind for p in pairs} == set(PERTURBATIONS)


def test_prompt_encoding_matches_the_tokenizer_and_grades_are_single_tokens(refs):
    tok = build_judge_tokenizer([r.trace for r in refs])
    spec = JudgeSpec(grade_ids=tuple(tok.encode(g)[0] for g in GRADE_TOKENS), max_trace_tokens=10_000)
    enc = JudgePromptEncoder(tok, spec)
    assert all(len(tok.encode(g)) == 1 for g in GRADE_TOKENS)
    for p in make_pairs(refs[:6], 6, seed=1):
        assert enc.encode(p.reference, p.candidate) == tok.encode(judge_prompt(p.reference, p.candidate))
    ids = enc.encode(refs[0].trace, "")
    assert tok.decode(ids).endswith("candidate: grade:")


def test_judge_config_from_overrides_and_cli_wiring(tmp_path):
    import argparse

    from rlpost.apps.policy_cli import add_policy_subcommands
    from rlpost.common.config import ConfigError
    from rlpost.judge.sft import load_judge_config

    cfg = load_judge_config(None, ["judge.steps=10", "judge.size=tiny"])
    assert (cfg.steps, cfg.size, cfg.out) == (10, "tiny", "runs/judge")
    (tmp_path / "run.yaml").write_text("sft: {steps: 5}\njudge: {batch_size: 8, out: x}\n")
    cfg = load_judge_config(str(tmp_path / "run.yaml"), ["judge.lr=0.01"])
    assert (cfg.batch_size, cfg.out, cfg.lr, cfg.steps) == (8, "x", 0.01, 3000)  # sft: does not leak into judge:
    with pytest.raises(ConfigError, match="judge"):
        load_judge_config(None, ["sft.steps=3"])
    with pytest.raises(ConfigError, match="judge.size"):
        load_judge_config(None, ["judge.size=huge"])
    parser = argparse.ArgumentParser()
    add_policy_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sft", "--task", "judge", "judge.steps=3"])
    assert args.task == "judge" and args.config == "judge.steps=3"  # moved to the overrides by the command
    assert parser.parse_args(["sft", "configs/tiny.yaml"]).task == "policy"
