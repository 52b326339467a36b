"""The ``judge`` backend's OpenAI-compatible transport (a vLLM server, a hosted LLM).

Two kinds of judge behind an endpoint:

- The project's judge (``model:`` names its checkpoint folder beside ``endpoint:``): the client reads ``judge.json``
  and the tokenizer and prompts exactly as in training. ``api: completions`` sends the token ids
  (``prompt: [[ids...], ...]``, which vLLM's completions API accepts); ``api: chat`` sends the same prompt as text
  whose encoding is those ids (the checkpoint's chat template renders the message verbatim). In the ``grade``
  answer format the answer is one token restricted to the 6 grade tokens (``allowed_token_ids``, a vLLM extra
  field, ``max_tokens: 1``): the server's grade is the in-process engine's grade. In the ``reasoning`` format the
  judge writes the rubric's rationale, then ``Grade: N``, then its end token.
- A foreign model (no ``model:``): text prompts (the full rubric, or the compact template), free text.

Per-sample failures come back as :class:`TransportFailure` (``timeout`` when the request hit ``timeout_s``,
``error`` for an HTTP error or a refused connection), so a step's timeouts are counted sample by sample; chat
sends one request per sample, completions one per ``batch_size`` prompts (a failure marks that chunk).
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlpost.judge.prompts import REASONING_INSTRUCTIONS, RUBRIC_INSTRUCTIONS, RUBRIC_USER, clean, rubric_prompt


@dataclass(frozen=True)
class Answer:
    """One judge answer: its text and whether the server stopped at ``max_tokens`` (``finish_reason: length``)."""

    text: str
    cut_off: bool = False


@dataclass(frozen=True)
class TransportFailure:
    """A sample the transport could not get an answer for: ``kind`` timeout | error, ``message`` names the URL."""

    kind: str
    message: str


class EndpointError(RuntimeError):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class EndpointTransport:
    """``complete(pairs)`` -> one :class:`Answer` or :class:`TransportFailure` per (reference, candidate) pair."""

    name = "endpoint"

    def __init__(self, endpoint: str, *, model_name: str | None, api: str, answer: str, max_tokens: int,
                 temperature: float, timeout_s: float, api_key_env: str | None, max_concurrency: int, prompt: str,
                 checkpoint: str | Path | None = None, batch_size: int = 256):
        self.base = endpoint.rstrip("/")
        self.model_name, self.api, self.answer = model_name, api, answer
        self.max_tokens, self.temperature, self.timeout_s = max_tokens, temperature, timeout_s
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.max_concurrency, self.prompt, self.batch_size = max_concurrency, prompt, batch_size
        self.encoder = None
        if checkpoint is not None:
            from rlpost.judge.model import JudgePromptEncoder, JudgeSpec
            from rlpost.judge.serve import context_length
            from rlpost.policy.tokenizer import PolicyTokenizer

            spec = JudgeSpec.load(checkpoint)  # raises naming the folder when it is not a judge checkpoint
            self.encoder = JudgePromptEncoder(PolicyTokenizer.load(checkpoint), spec)
            self.context = context_length(checkpoint)
            if answer == "reasoning" and spec.reasoning_tail is None:
                raise ValueError(f"judge checkpoint {str(checkpoint)!r} was not trained on the reasoning answer "
                                 "format (no reasoning_tail in judge.json): retrain it, or use answer: grade")

    # --- HTTP ------------------------------------------------------------------------------------------------------
    def _post(self, path: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        url = self.base + path
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise EndpointError("error", f"judge endpoint {url}: HTTP {exc.code}: {detail}") from None
        except TimeoutError as exc:
            raise EndpointError("timeout", f"judge endpoint {url}: no answer within timeout_s={self.timeout_s} "
                                           f"({exc})") from None
        except urllib.error.URLError as exc:
            kind = "timeout" if isinstance(exc.reason, (TimeoutError, socket.timeout)) else "error"
            raise EndpointError(kind, f"judge endpoint {url} unreachable: {exc.reason}") from None
        except OSError as exc:
            raise EndpointError("error", f"judge endpoint {url} unreachable: {exc}") from None

    def _body(self, prompt_tokens: int = 0) -> dict:
        """The sampling fields; ``prompt_tokens``: the longest prompt of the request (the project's judge: the answer
        is capped to the context left, since vLLM answers HTTP 400 to prompt + max_tokens beyond it)."""
        max_tokens = self.max_tokens
        if self.encoder is not None:
            max_tokens = max(1, min(max_tokens, self.context - prompt_tokens))
        body: dict[str, Any] = {"max_tokens": max_tokens, "temperature": self.temperature}
        if self.model_name:
            body["model"] = self.model_name
        if self.encoder is not None and self.answer == "grade":
            # One token among the grade tokens: what the in-process engine decodes (vLLM's extra sampling field).
            body |= {"allowed_token_ids": list(self.encoder.spec.grade_ids), "max_tokens": 1, "temperature": 0.0}
        if self.encoder is not None:
            # The judge's answer ends at its end token, which is a special token: keep the text free of it.
            body["skip_special_tokens"] = True
        return body

    # --- prompts ---------------------------------------------------------------------------------------------------
    def _completion_prompt(self, reference: str, candidate: str) -> Any:
        if self.encoder is not None:
            return self.encoder.encode(reference, candidate, reasoning=self.answer == "reasoning")
        if self.prompt == "compact":  # the project's judge served without its checkpoint at hand: text only
            from rlpost.judge.model import judge_prompt

            return judge_prompt(reference, candidate)
        return rubric_prompt(reference, candidate, reasoning=self.answer == "reasoning")

    def _messages(self, reference: str, candidate: str) -> list[dict]:
        if self.encoder is not None:
            return [{"role": "user", "content": self.encoder.text(reference, candidate,
                                                                  reasoning=self.answer == "reasoning")}]
        system = REASONING_INSTRUCTIONS if self.answer == "reasoning" else RUBRIC_INSTRUCTIONS
        return [{"role": "system", "content": system},
                {"role": "user", "content": RUBRIC_USER.format(reference=clean(reference), candidate=clean(candidate))}]

    # --- calls -----------------------------------------------------------------------------------------------------
    def complete(self, pairs: Sequence[tuple[str, str]]) -> list[Answer | TransportFailure]:
        if not pairs:
            return []
        if self.api == "completions":
            chunks = [list(pairs[s:s + self.batch_size]) for s in range(0, len(pairs), self.batch_size)]
            with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(chunks)))) as pool:
                return [a for part in pool.map(self._complete_chunk, chunks) for a in part]
        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(pairs)))) as pool:
            return list(pool.map(self._chat_one, pairs))

    def _complete_chunk(self, chunk: list[tuple[str, str]]) -> list[Answer | TransportFailure]:
        prompts = [self._completion_prompt(r, c) for r, c in chunk]
        longest = max(len(p) for p in prompts) if self.encoder is not None else 0
        try:
            data = self._post("/completions", self._body(longest) | {"prompt": prompts})
        except EndpointError as exc:
            return [TransportFailure(exc.kind, str(exc))] * len(chunk)
        out: list[Answer | TransportFailure] = [
            TransportFailure("error", f"judge endpoint {self.base}/completions: no choice for this prompt")
        ] * len(chunk)
        for i, choice in enumerate(data.get("choices") or []):
            idx = choice.get("index", i)
            if isinstance(idx, int) and 0 <= idx < len(chunk):
                out[idx] = Answer(choice.get("text") or "", choice.get("finish_reason") == "length")
        return out

    def _chat_one(self, pair: tuple[str, str]) -> Answer | TransportFailure:
        n = len(self.encoder.encode(*pair, reasoning=self.answer == "reasoning")) if self.encoder is not None else 0
        try:
            data = self._post("/chat/completions", self._body(n) | {"messages": self._messages(*pair)})
        except EndpointError as exc:
            return TransportFailure(exc.kind, str(exc))
        choice = (data.get("choices") or [{}])[0]
        return Answer(((choice.get("message") or {}).get("content")) or "", choice.get("finish_reason") == "length")
