"""The judge model's files and prompt: the prompt format, ``judge.json`` (:class:`JudgeSpec`), the prompt
encoder shared by training and serving, the tokenizer, the checkpoint writer, and the grade loss / greedy grade
prediction on token batches. Training and agreement are ``rlpost.judge.sft``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JUDGE_FILE = "judge.json"
GRADE_TOKENS = tuple(str(g) for g in range(6))
# A compact statement of the docs/design.md §5.1 rubric: the tiny judge learns from the pairs, not from the words, and
# every prompt token costs training time; an OpenAI-compatible endpoint gets the full rubric (rlpost.judge.critic).
RUBRIC_PREFIX = "Rubric: grade 0-5, 5 consistent, 0 unrelated."
PROMPT_TEMPLATE = "{prefix} reference: {reference} candidate: {candidate} grade:"
# The reasoning answer format (what a reasoning model does): the prompt ends in "rationale:", the completion is the
# rubric's rationale, then " Grade: N" and the end-of-sequence token (so a server stops there by itself).
REASONING_TAIL = " rationale:"
GRADE_MARK = " Grade: "
# The chat API renders the messages' contents verbatim, so a chat request tokenises exactly like the text prompt
# (the tiny judge has no chat format of its own; written into tokenizer_config.json by save_judge).
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


def clean_text(text: Any) -> str:
    """A trace as it enters a prompt: a str with whitespace collapsed (non-str -> "")."""
    return " ".join(text.split()) if isinstance(text, str) else ""


def judge_prompt(reference: str, candidate: str, prefix: str = RUBRIC_PREFIX,
                 template: str = PROMPT_TEMPLATE) -> str:
    """The judge's prompt text for one pair (the completion is one grade token); whitespace collapsed."""
    return " ".join(template.format(prefix=prefix, reference=clean_text(reference),
                                    candidate=clean_text(candidate)).split())


@dataclass
class JudgeSpec:
    """What a server needs to prompt a judge checkpoint (``judge.json``)."""

    prefix: str = RUBRIC_PREFIX
    template: str = PROMPT_TEMPLATE
    grade_tokens: tuple[str, ...] = GRADE_TOKENS
    grade_ids: tuple[int, ...] = ()
    max_trace_tokens: int = 96
    # Set when the judge was also trained on the reasoning format (rationale, " Grade: N", end token); older
    # checkpoints have no such keys and answer in the grade format only.
    reasoning_tail: str | None = None
    eos_id: int | None = None

    def prompt(self, reference: str, candidate: str) -> str:
        return judge_prompt(reference, candidate, self.prefix, self.template)

    def save(self, directory: str | Path) -> None:
        d = {"prefix": self.prefix, "template": self.template, "grade_tokens": list(self.grade_tokens),
             "grade_ids": list(self.grade_ids), "max_trace_tokens": self.max_trace_tokens,
             "reasoning_tail": self.reasoning_tail, "eos_id": self.eos_id}
        (Path(directory) / JUDGE_FILE).write_text(json.dumps(d, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> JudgeSpec:
        path = Path(directory) / JUDGE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{directory}: no {JUDGE_FILE}; "
                                    f"not a judge checkpoint written by `rlpost sft --task judge`")
        d = json.loads(path.read_text())
        return cls(d["prefix"], d["template"], tuple(d["grade_tokens"]), tuple(d["grade_ids"]), d["max_trace_tokens"],
                   d.get("reasoning_tail"), d.get("eos_id"))


class JudgePromptEncoder:
    """Token ids of judge prompts exactly as in training (each trace capped at ``max_trace_tokens`` tokens)."""

    def __init__(self, tokenizer, spec: JudgeSpec):
        self.tok, self.spec = tokenizer, spec
        pre, rest = spec.template.split("{reference}")
        mid, tail = rest.split("{candidate}")
        # Each trace is encoded as " " + text, so the pieces drop the space before it: the concatenation equals
        # the encoding of the formatted prompt text (tested).
        self._pre_text, self._mid_text = pre.format(prefix=spec.prefix).rstrip(" "), mid.rstrip(" ")
        self._pre = tokenizer.encode(self._pre_text)
        self._mid = tokenizer.encode(self._mid_text)
        self._tails = {False: tail, True: spec.reasoning_tail}
        self._tail_ids = {False: tokenizer.encode(tail)}
        if spec.reasoning_tail is not None:
            self._tail_ids[True] = tokenizer.encode(spec.reasoning_tail)

    def trace_ids(self, text: Any) -> list[int]:
        t = clean_text(text)
        return self.tok.encode(" " + t)[: self.spec.max_trace_tokens] if t else []

    def _tail(self, reasoning: bool) -> list[int]:
        if reasoning and True not in self._tail_ids:
            raise ValueError("this judge checkpoint was not trained on the reasoning answer format (its judge.json "
                             "has no reasoning_tail): retrain it with `rlpost sft --task judge`, or use answer: grade")
        return self._tail_ids[reasoning]

    def encode(self, reference: Any, candidate: Any, reasoning: bool = False) -> list[int]:
        """The prompt's ids: the grade format (completion: one grade token) or, with ``reasoning``, the reasoning
        format (completion: rationale, " Grade: N", end token)."""
        return self._pre + self.trace_ids(reference) + self._mid + self.trace_ids(candidate) + self._tail(reasoning)

    def text(self, reference: Any, candidate: Any, reasoning: bool = False) -> str:
        """The prompt as text whose encoding is :meth:`encode`'s ids (each trace cut to the same token budget), for
        APIs that take text only (chat): ``tok.encode(text(...)) == encode(...)`` whenever the cut falls between
        tokens that re-encode alike (checked by the caller)."""
        self._tail(reasoning)
        parts = [self._pre_text, self._trace_text(reference), self._mid_text, self._trace_text(candidate),
                 self._tails[reasoning]]
        return "".join(parts)

    def _trace_text(self, text: Any) -> str:
        ids = self.trace_ids(text)
        return self.tok.tk.decode(ids, skip_special_tokens=False) if ids else ""

    def answer_ids(self, rationale: str, grade: int) -> tuple[list[int], list[int]]:
        """The reasoning-format completion around the grade token: (ids before it: " <rationale> Grade: ",
        ids after it: the end token)."""
        if self.spec.eos_id is None:
            raise ValueError("judge spec has no eos_id: the reasoning format needs an end token")
        before = self.tok.encode(" " + clean_text(rationale) + GRADE_MARK)
        return before, [self.spec.eos_id]


def build_judge_tokenizer(traces: Sequence[str]):
    """The policy's tokenizer pipeline on the trace corpus + the prompt's words; no scene tokens, 2 dummy bins."""
    from rlpost.policy.model import wording_corpus
    from rlpost.policy.tokenizer import PolicyTokenizer

    words = "reference candidate grade Grade " + RUBRIC_PREFIX + " ".join(GRADE_TOKENS)
    corpus = list(traces) + wording_corpus() + [words, "left right . , : ; ( ) - ' 0 1 2 3 4 5 6 7 8 9 m s"]
    return PolicyTokenizer.build([], corpus, num_bins=2)


def save_judge(directory: str | Path, backbone, tok, spec: JudgeSpec) -> Path:
    """``save_pretrained`` weights + tokenizer + ``judge.json``: ``vllm.LLM(model=dir)`` loads it directly."""
    from rlpost.policy.tokenizer import PAD

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    backbone.save_pretrained(str(d), safe_serialization=True)
    tok.save(d)
    gen = {"pad_token_id": tok.id(PAD), "bos_token_id": None, "eos_token_id": spec.eos_id, "do_sample": False}
    (d / "generation_config.json").write_text(json.dumps(gen, indent=1))
    tok_config = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps(tok_config | {"chat_template": CHAT_TEMPLATE}, indent=1))
    spec.save(d)
    return d


def collate_judge_batch(items, pad: int, grade_ids):
    """A padded batch of training items: ``(prompt_ids, grade)`` (grade format: the grade token follows the
    prompt) or ``(prompt_ids, grade, before, after)`` (reasoning format: prompt, ``before`` (rationale and
    " Grade: "), the grade token, ``after`` (the end token)). ``last``: the position whose next token is the grade;
    ``prompt_len``: the prompt's length; ``answer_mask``: the answer tokens other than the grade (LM targets)."""
    import torch

    seqs = []
    for it in items:
        ids, g = it[0], it[1]
        before, after = (it[2], it[3]) if len(it) > 2 else ([], [])
        seqs.append((ids, g, before, after))
    width = max(len(ids) + len(b) + 1 + len(a) for ids, _, b, a in seqs)
    b = len(items)
    input_ids = torch.full((b, width), pad, dtype=torch.long)
    attn = torch.zeros((b, width), dtype=torch.long)
    answer = torch.zeros((b, width), dtype=torch.bool)
    last = torch.zeros(b, dtype=torch.long)
    prompt_len = torch.zeros(b, dtype=torch.long)
    target = torch.zeros(b, dtype=torch.long)
    for i, (ids, g, before, after) in enumerate(seqs):
        row = list(ids) + list(before) + [grade_ids[g]] + list(after)
        n, k = len(ids), len(ids) + len(before)
        input_ids[i, :len(row)] = torch.tensor(row)
        attn[i, :len(row)] = 1
        answer[i, n:k] = True
        answer[i, k + 1:len(row)] = True
        last[i] = k - 1  # the position whose next token is the grade
        prompt_len[i] = n
        target[i] = g
    return {"input_ids": input_ids, "attention_mask": attn, "last": last, "target": target,
            "prompt_len": prompt_len, "answer_mask": answer}


class JudgeLoss:
    """CE of the grade token (+ the mean next-token CE of the reasoning-format answer tokens, weight 1: the rationale
    is a target like the grade) (+ ``lm_weight`` × next-token CE on the prompt)."""

    @staticmethod
    def module(backbone, grade_ids: Sequence[int], lm_weight: float):
        import torch
        from torch import nn

        class _M(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = backbone
                self.register_buffer("grade_ids", torch.tensor(list(grade_ids), dtype=torch.long), persistent=False)

            def forward(self, input_ids, attention_mask, last, target, prompt_len=None, answer_mask=None):
                logits = self.backbone(input_ids=input_ids, attention_mask=attention_mask).logits.float()
                rows = torch.arange(input_ids.shape[0])
                at = logits[rows, last]  # (B, V): the distribution of the grade token
                ce_grade = nn.functional.cross_entropy(at, self.grade_ids[target])
                loss = ce_grade
                out = {"ce_grade": ce_grade.detach()}
                flat = logits[:, :-1].reshape(-1, logits.shape[-1])
                if answer_mask is not None and bool(answer_mask[:, 1:].any()):
                    lab = input_ids[:, 1:].masked_fill(~answer_mask[:, 1:], -100)
                    ce_answer = nn.functional.cross_entropy(flat, lab.reshape(-1), ignore_index=-100)
                    loss = loss + ce_answer
                    out["ce_answer"] = ce_answer.detach()
                if lm_weight > 0:
                    lab = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
                    pos = torch.arange(lab.shape[1]).unsqueeze(0)
                    end = (prompt_len if prompt_len is not None else last + 1) - 1
                    lab = lab.masked_fill(pos >= end.unsqueeze(1), -100)  # prompt tokens only (the answer has its own)
                    ce_lm = nn.functional.cross_entropy(flat, lab.reshape(-1), ignore_index=-100)
                    loss = loss + lm_weight * ce_lm
                    out["ce_lm"] = ce_lm.detach()
                out["loss"] = loss
                return out

        return _M()


def predict_grades(backbone, enc: JudgePromptEncoder, pairs: Sequence[tuple[str, str]], pad: int,
                   batch_size: int = 64) -> list[int]:
    """Greedy grade over the 6 grade tokens (what constrained decoding picks) for (reference, candidate) pairs."""
    import torch

    grade_ids = torch.tensor(list(enc.spec.grade_ids))
    out: list[int] = []
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        for s in range(0, len(pairs), batch_size):
            items = [(enc.encode(r, c), 0) for r, c in pairs[s:s + batch_size]]
            batch = collate_judge_batch(items, pad, enc.spec.grade_ids)
            logits = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            at = logits[torch.arange(len(items)), batch["last"]][:, grade_ids]
            out += at.argmax(-1).tolist()
    backbone.train(was_training)
    return out
