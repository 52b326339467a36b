"""The judge's reasoning-format parser, its training items, and the endpoint transport's requests (a fake server
on loopback: what is sent for the project's judge, per-sample timeouts). The real vLLM server:
tests/integration/test_judge_server.py."""

from __future__ import annotations

import time

import pytest
from fake_openai import fake_openai

from rlpost.judge.critic import JudgeCritic
from rlpost.judge.data import make_pairs, references_from, short_rationale
from rlpost.judge.model import (
    GRADE_TOKENS,
    REASONING_TAIL,
    JudgePromptEncoder,
    JudgeSpec,
    build_judge_tokenizer,
    collate_judge_batch,
    save_judge,
)
from rlpost.judge.parse import parse_reasoning
from rlpost.judge.serve import context_length
from rlpost.judge.sft import _encode_pairs
from rlpost.rewards.critic import reasoning_critic
from rlpost.rewards.critic_backends import CritiqueRequest
from rlpost.rewards.synthetic import synthetic_scenarios
from rlpost.rewards.types import Completion


@pytest.mark.parametrize("text, grade, rationale", [
    ("<think>same decision, one factor missing</think>\nGrade: 4", 4, "same decision, one factor missing"),
    ("The decisions match. \\boxed{5}", 5, "The decisions match."),
    ("behaviour exact (factor F1 0.50, extra lane) Grade: 3", 3, "behaviour exact (factor F1 0.50, extra lane)"),
    ("Both stop; reasons differ, so 2", 2, "Both stop; reasons differ, so"),
    ("Grade: 3 on a first look, but on reflection **Grade:** 1", 1, "Grade: 3 on a first look, but on reflection"),
    ("score 4/5", 4, "score"), ("I give it a 2 out of 5.", 2, "I give it a"),
])
def test_reasoning_answers_parse_to_their_final_grade(text, grade, rationale):
    assert parse_reasoning(text) == (grade, "", rationale)


@pytest.mark.parametrize("text, why", [
    ("<think>the candidate turns left while", "not closed (cut off at max_tokens)"),
    ("the traces agree on the lead vehicle", "no final grade (cut off at max_tokens)"),
    ("factor F1 0.50", "no final grade"), ("Grade: 7", "outside 0..5"), ("", "no final grade"),
])
def test_reasoning_answers_without_a_grade_are_unparseable(text, why):
    grade, msg, _ = parse_reasoning(text, cut_off=True)
    assert grade is None and why in msg


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A judge checkpoint folder (random tiny weights: only judge.json and the tokenizer matter here)."""
    from rlpost.policy.config import ModelConfig
    from rlpost.policy.model import build_backbone
    from rlpost.policy.tokenizer import TRAJ_END

    refs = references_from(synthetic_scenarios(12, seed=5))
    tok = build_judge_tokenizer([r.trace for r in refs])
    spec = JudgeSpec(grade_ids=tuple(tok.encode(g)[0] for g in GRADE_TOKENS), reasoning_tail=REASONING_TAIL,
                     eos_id=tok.id(TRAJ_END))
    backbone = build_backbone(ModelConfig(size="tiny", expert={"enabled": False}), tok)
    return save_judge(tmp_path_factory.mktemp("judge"), backbone, tok, spec), tok, spec, refs


def test_reasoning_items_target_the_rationale_then_the_grade_then_the_end(judge_dir):
    _, tok, spec, refs = judge_dir
    enc = JudgePromptEncoder(tok, spec)
    pairs = make_pairs(refs, 4, 0, refs)
    assert all(p.rationale for p in pairs)
    items = _encode_pairs(enc, pairs, reasoning_share=0.5, seed=0)
    reasoning = [(p, it) for p, it in zip(pairs, items) if len(it) == 4]
    assert 0 < len(reasoning) < len(pairs)
    p, it = reasoning[0]
    assert (it[0] == enc.encode(p.reference, p.candidate, reasoning=True)
            and it[0][-len(enc._tail(True)):] == enc._tail(True))
    short = short_rationale(p.rationale)
    assert short.startswith(("behaviour ", "generated trace has no usable decision")) and len(short) < len(p.rationale)
    assert tok.tk.decode(it[2] + [spec.grade_ids[p.grade]]) == " " + short + f" Grade: {p.grade}"
    assert it[3] == [spec.eos_id]
    batch = collate_judge_batch([items[0], it], tok.id("<|pad|>"), spec.grade_ids)
    row = batch["input_ids"][1]
    assert int(row[batch["last"][1] + 1]) == spec.grade_ids[p.grade]
    # answer tokens: the rationale + " Grade: " and the end token, not the prompt and not the grade itself
    assert int(batch["answer_mask"][1].sum()) == len(it[2]) + 1 and not bool(batch["answer_mask"][0].any())
    # the chat API's text form of the prompt encodes to the training ids
    for q in pairs:
        for r in (False, True):
            assert tok.encode(enc.text(q.reference, q.candidate, r)) == enc.encode(q.reference, q.candidate, r)


DELAY_FOR: set = set()  # chat requests whose prompt holds one of these words answer after 3 s


def _respond(path: str, body: dict) -> dict:
    if path.endswith("/chat/completions"):
        if any(w in body["messages"][-1]["content"] for w in DELAY_FOR):
            time.sleep(3)
        return {"choices": [{"message": {"content": "<think>ok</think> Grade: 4"}, "finish_reason": "stop"}]}
    return {"choices": [{"index": i, "text": "3", "finish_reason": "length"} for i in range(len(body["prompt"]))]}


@pytest.fixture()
def fake():
    DELAY_FOR.clear()
    with fake_openai(_respond) as server:
        yield server


def test_project_judge_behind_an_endpoint_gets_token_ids_and_grade_tokens(fake, judge_dir):
    ckpt, tok, spec, refs = judge_dir
    enc = JudgePromptEncoder(tok, spec)
    critic = JudgeCritic(endpoint=fake.url, model=str(ckpt), model_name="judge")
    reqs = [CritiqueRequest("a", refs[1].trace, refs[0].trace), CritiqueRequest("b", "garbage", refs[1].trace)]
    assert [(g.grade, g.status) for g in critic.grade(reqs)] == [(3, "ok"), (3, "ok")]
    (path, body), = fake.seen
    assert path == "/v1/completions" and body["model"] == "judge"
    assert body["prompt"] == [enc.encode(r.reference, r.trace) for r in reqs]  # the training ids, not text
    assert body["allowed_token_ids"] == list(spec.grade_ids) and body["max_tokens"] == 1 and body["temperature"] == 0


def test_reasoning_chat_text_prompt_and_per_sample_timeouts(fake, judge_dir):
    ckpt, tok, spec, refs = judge_dir
    enc = JudgePromptEncoder(tok, spec)
    DELAY_FOR.add("SLOW")
    critic = JudgeCritic(endpoint=fake.url, model=str(ckpt), api="chat", answer="reasoning", timeout_s=1.0)
    reqs = [CritiqueRequest("a", refs[1].trace, refs[0].trace),
            CritiqueRequest("b", "SLOW " + refs[2].trace, refs[2].trace)]
    grades = critic.grade(reqs)
    assert [(g.grade, g.status) for g in grades] == [(4, "ok"), (None, "timeout")]
    assert grades[0].details["judge_rationale"] == "ok" and "timeout_s=1.0" in grades[1].rationale
    body = next(b for _, b in fake.seen if "SLOW" not in b["messages"][0]["content"])
    assert body["messages"] == [{"role": "user", "content": enc.text(reqs[0].reference, reqs[0].trace, True)}]
    assert "allowed_token_ids" not in body and (
        body["max_tokens"] == context_length(ckpt) - len(enc.encode(reqs[0].reference, reqs[0].trace, True)))
    # through the reward: the timed-out sample is status timeout (counted per step), not an error
    scen = synthetic_scenarios(2, seed=2)
    comps = [Completion(scen[0].scenario_id, 0, scen[0].coc_trace, None),
             Completion(scen[1].scenario_id, 0, "SLOW " + scen[1].coc_trace, None)]
    out = reasoning_critic(comps, scen, backend="judge", endpoint=fake.url, model=str(ckpt), api="chat",
                           answer="reasoning", timeout_s=1.0)
    assert [(r.status, r.value) for r in out] == [("ok", 0.8), ("timeout", 0.0)]
    assert "no answer within timeout_s" in out[1].info["error"]


def test_foreign_reasoning_model_gets_the_rubric_and_a_cut_off_answer_is_named(fake):
    critic = JudgeCritic(endpoint=fake.url, answer="reasoning", max_tokens=64)
    g, = critic.grade([CritiqueRequest("a", "I will stop.", "I will stop.")])
    assert (g.grade, g.status) == (3, "ok")  # a bare last digit, though the server said finish_reason length
    (_, body), = fake.seen
    assert "end your answer with a last line of the form 'Grade: N'" in body["prompt"][0] and body["max_tokens"] == 64
