"""Phase-constrained decoding (docs/design.md §1): the rules are data, one table used by HF generate and by vLLM.

A completion (the tokens after a prompt that ends in ``<|cot_start|>``) walks through phases:

    trace      any trace token or <|cot_end|>; never a trajectory bin or scene token
               (after ``max_trace_tokens`` trace tokens only <|cot_end|>)
    open       <|traj_start|>
    traj       exactly 128 bins, alternating acceleration <A..> and curvature <K..> tokens
    close      <|traj_end|> (the EOS: generation stops)

:class:`PhaseRules` holds that table (JSON, saved with each checkpoint as ``phase_rules.json``);
:class:`PhaseTracker` is the per-sequence state machine; :class:`HFPhaseLogitsProcessor` plugs it into
``transformers`` ``generate``; :class:`VLLMPhaseLogitsProcessor` (in ``rlpost.policy.vllm_engine``) into vLLM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

RULES_FILE = "phase_rules.json"


@dataclass(frozen=True)
class Phase:
    """One decoding phase.

    allowed: token-id sets cycled by position inside the phase (``[A, K]`` alternates two sets).
    exits: token id -> next phase, taken when that token is emitted.
    length: after this many tokens the phase ends and ``then`` starts (fixed-length phases), else None.
    max_tokens: after this many tokens only ``forced`` is allowed (bounded free-text phases), else None.
    """

    allowed: tuple[tuple[int, ...], ...]
    exits: dict[int, str] = field(default_factory=dict)
    length: int | None = None
    then: str | None = None
    max_tokens: int | None = None
    forced: tuple[int, ...] = ()


@dataclass
class PhaseRules:
    """The rule table: phases by name, the start phase and the vocabulary size the masks cover."""

    phases: dict[str, Phase]
    start: str
    vocab_size: int

    @classmethod
    def for_tokenizer(cls, tok, max_trace_tokens: int) -> PhaseRules:
        """The docs/design.md §1 rules for a :class:`~rlpost.policy.tokenizer.PolicyTokenizer`."""
        from rlpost.policy.tokenizer import COT_END, TRAJ_END, TRAJ_START, TRAJ_TOKENS

        cot_end, t_start, t_end = tok.id(COT_END), tok.id(TRAJ_START), tok.id(TRAJ_END)
        trace = tuple(int(i) for i in tok.trace_ids) + (cot_end,)
        phases = {
            "trace": Phase((trace,), exits={cot_end: "open"}, max_tokens=max_trace_tokens, forced=(cot_end,)),
            "open": Phase(((t_start,),), exits={t_start: "traj"}),
            "traj": Phase((tuple(int(i) for i in tok.accel_ids), tuple(int(i) for i in tok.curv_ids)),
                          length=TRAJ_TOKENS, then="close"),
            "close": Phase(((t_end,),), exits={t_end: "done"}),
            "done": Phase(((t_end,),)),
        }
        return cls(phases, "trace", tok.vocab_size)

    # --- JSON ---------------------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"start": self.start, "vocab_size": self.vocab_size, "phases": {
            name: {"allowed": [list(s) for s in p.allowed], "exits": {str(k): v for k, v in p.exits.items()},
                   "length": p.length, "then": p.then, "max_tokens": p.max_tokens, "forced": list(p.forced)}
            for name, p in self.phases.items()}}

    @classmethod
    def from_json(cls, data: dict) -> PhaseRules:
        phases = {
            name: Phase(tuple(tuple(s) for s in p["allowed"]), {int(k): v for k, v in p["exits"].items()},
                        p["length"], p["then"], p["max_tokens"], tuple(p["forced"]))
            for name, p in data["phases"].items()}
        return cls(phases, data["start"], int(data["vocab_size"]))

    def save(self, directory: str | Path) -> None:
        (Path(directory) / RULES_FILE).write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, directory: str | Path) -> PhaseRules:
        return cls.from_json(json.loads((Path(directory) / RULES_FILE).read_text()))

    # --- masks --------------------------------------------------------------------------------------------------
    def masks(self, vocab_size: int | None = None, device="cpu") -> dict[tuple, torch.Tensor]:
        """Boolean allowed-masks ``(V,)`` keyed by :meth:`PhaseTracker.key` (``V`` may exceed the rules' vocab:
        padded logits are never allowed)."""
        v = vocab_size or self.vocab_size
        out = {}
        for name, p in self.phases.items():
            for j, ids in enumerate(p.allowed):
                out[(name, j, False)] = _mask(ids, v, device)
            if p.max_tokens is not None:
                out[(name, 0, True)] = _mask(p.forced, v, device)
        return out

    def tracker(self) -> PhaseTracker:
        return PhaseTracker(self)


def _mask(ids, vocab_size: int, device) -> torch.Tensor:
    m = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    m[torch.as_tensor(list(ids), dtype=torch.long, device=device)] = True
    return m


class PhaseTracker:
    """Where one sequence stands in the rules: feed it each emitted token; :meth:`key` names the current mask."""

    __slots__ = ("rules", "phase", "n", "violations")

    def __init__(self, rules: PhaseRules):
        self.rules = rules
        self.phase = rules.start
        self.n = 0  # tokens emitted in the current phase
        self.violations = 0  # tokens that were not allowed (only possible without masking)

    def key(self) -> tuple:
        p = self.rules.phases[self.phase]
        if p.max_tokens is not None and self.n >= p.max_tokens:
            return (self.phase, 0, True)
        return (self.phase, self.n % len(p.allowed), False)

    def allowed(self) -> tuple[int, ...]:
        name, j, forced = self.key()
        p = self.rules.phases[name]
        return p.forced if forced else p.allowed[j]

    def step(self, token: int) -> None:
        token = int(token)
        p = self.rules.phases[self.phase]
        if token not in self.allowed():
            self.violations += 1
        if token in p.exits:
            self.phase, self.n = p.exits[token], 0
            return
        self.n += 1
        if p.length is not None and self.n >= p.length:
            self.phase, self.n = p.then, 0

    def feed(self, tokens) -> PhaseTracker:
        for t in tokens:
            self.step(t)
        return self


def apply_masks(logits: torch.Tensor, keys: list[tuple], masks: dict[tuple, torch.Tensor]) -> torch.Tensor:
    """Set the logits of disallowed tokens to −inf, row by row (rows grouped by key). In place; returns logits."""
    groups: dict[tuple, list[int]] = {}
    for row, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(row)
    width = logits.shape[-1]
    for key, rows in groups.items():
        mask = masks[key]
        if mask.shape[0] < width:
            mask = torch.cat([mask, mask.new_zeros(width - mask.shape[0])])
        idx = torch.as_tensor(rows, dtype=torch.long, device=logits.device)
        logits[idx] = logits[idx].masked_fill(~mask[:width].to(logits.device), float("-inf"))
    return logits


class HFPhaseLogitsProcessor:
    """A ``transformers`` logits processor applying :class:`PhaseRules` to a batch whose (left-padded) prompts all
    end in ``<|cot_start|>``. Pass it in ``LogitsProcessorList`` to ``model.generate``; one instance per call."""

    def __init__(self, rules: PhaseRules):
        self.rules = rules
        self.masks = rules.masks()
        self.trackers: list[PhaseTracker] | None = None
        self.prompt_len = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.trackers is None or len(self.trackers) != input_ids.shape[0]:
            self.trackers = [self.rules.tracker() for _ in range(input_ids.shape[0])]
            self.prompt_len = input_ids.shape[1]
        else:  # one call per generated position: the last column is the token chosen at the previous call
            for tr, t in zip(self.trackers, input_ids[:, -1].tolist()):
                tr.step(t)
        return apply_masks(scores, [tr.key() for tr in self.trackers], self.masks)
