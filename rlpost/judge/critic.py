"""The ``judge`` critic backend of ``reasoning_critic`` (docs/design.md §5.1): a language model grades the trace 0–5.

Config (the reward's params; give the component ``cache: true`` and a deadline that fits the judge)::

    # the project's own judge (or any local HF model directory) served by vLLM
    - {name: reasoning_critic, weight: 0.2, cache: true, deadline_s: 60,
       params: {backend: judge, model: runs/judge/final}}
    # the project's judge behind vLLM's OpenAI server (`python -m rlpost.judge.serve runs/judge/final`): the
    # checkpoint folder beside the endpoint gives the client its token ids and grade tokens
    - {name: reasoning_critic, weight: 0.2, cache: true, deadline_s: 60,
       params: {backend: judge, endpoint: "http://127.0.0.1:8000/v1", model_name: judge, model: runs/judge/final}}
    # a reasoning model behind any OpenAI-compatible server: the full docs/design.md §5.1 rubric, reasoning then the
    # grade
    - {name: reasoning_critic, weight: 0.2, cache: true, deadline_s: 300,
       params: {backend: judge, endpoint: "http://10.0.0.5:8000/v1", model_name: qwen3-32b, api: chat,
                answer: reasoning, max_tokens: 2048, timeout_s: 240}}

Where the vLLM engine lives (``engine`` option, default ``auto``):
- ``actor``: a named Ray actor :class:`rlpost.actors.judge_server.JudgeServer` (name ``server``, namespace
  ``namespace``), started once by whoever builds the run (``rlpost.actors.judge_server.start_judge_server``).
  Reward functions run in guarded worker processes (``rewards/guard.py``) that are killed on a timeout and
  restarted; an engine inside one
  would be rebuilt (~9 s of imports and start-up) after every kill and duplicated in every process that scores
  (each rollout/curator pipeline), while the actor is started once, shared by all of them, keeps its own core,
  and survives the workers. The backend finds it by name and namespace, connecting the worker process to *its*
  Ray cluster when it is not connected yet: ``ray_address`` if given, else ``RLPOST_RAY_ADDRESS`` /
  ``RAY_ADDRESS``, else the GCS address of the raylet that started the worker's ancestor actor (a guarded worker
  of the run's RewardWorker actor). Never ``address="auto"``, which on a shared machine may find another cluster.
  A driver that scores in its own process must start the server before its first guarded reward call (the
  forkserver keeps the environment it started with) or pass ``ray_address``.
- ``local``: a vLLM engine inside the process that grades (the reward worker): for runs without Ray (tests,
  ``rlpost rewards``, a single script). Its first call pays the engine start, so give the component a deadline
  of ~30 s or more.
- ``auto``: the actor when Ray is reachable from this process and the named actor exists, else ``local``.

An ``endpoint`` (OpenAI-compatible base URL ending in ``/v1``) bypasses both (``rlpost.judge.endpoint``):
``api: completions`` sends batched requests (lists of prompts), ``api: chat`` one request per sample
(``max_concurrency`` at a time). Give ``model:`` (the judge checkpoint folder) beside ``endpoint:`` when the server
runs the project's judge: the client then prompts with the training token ids and restricts the answer to the grade
tokens, so the server grades exactly like the in-process engine.

Answer formats (``answer``):
- ``grade`` (default): the answer is the grade; :func:`parse_grade` reads it strictly (``4``, ``Grade: 4``,
  ``4/5``, ``**4**``, or after a closed ``<think>…</think>`` block). The project's judge answers one token among
  the 6 grade tokens (vLLM ``allowed_token_ids``); a foreign model gets ``max_tokens`` (16) of free text.
- ``reasoning``: what a reasoning model does: reasoning first (a ``<think>`` block or prose), the grade at the end
  (``\\boxed{N}``, ``Grade: N`` or a last bare digit, :func:`rlpost.judge.parse.parse_reasoning`); ``max_tokens``
  defaults to 1024 and the reasoning is kept in the info (``judge_rationale``). The project's judge is trained on
  this format too (the rubric's rationale, then ``Grade: N``).

A malformed answer gives status ``unparseable`` (grade 0) with the raw output in the info, so a judge that stops
following the format shows up in ``rewards/reasoning_critic/unparseable``. A request that times out
(``timeout_s``) gives that sample status ``timeout`` (counted per step in ``rewards/reasoning_critic/timeout``),
an HTTP error or a refused connection status ``error`` with the URL. A missing ground truth is status error without
a judge call (a data defect). A failure of the actor or the local engine raises: the guard turns that into status
error for the batch, which is not cached.

The project's judge checkpoint (``rlpost sft --task judge``, ``rlpost.judge.sft``) carries ``judge.json``: its
prompt template, grade token ids and (when trained on it) the reasoning format's prompt tail and end token. Served
locally or by the actor, the grade format is constrained to those 6 tokens with one output token; the parse stays
strict anyway. A model directory without ``judge.json`` (a real instruction LLM on a GPU) gets the full rubric
prompt and free text (``max_tokens``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from rlpost.judge.endpoint import Answer, EndpointTransport, TransportFailure
from rlpost.judge.parse import parse_grade, parse_reasoning
from rlpost.judge.prompts import RUBRIC_INSTRUCTIONS, RUBRIC_USER, rubric_prompt  # noqa: F401
from rlpost.judge.prompts import clean as _clean
from rlpost.rewards.critic_backends import CritiqueGrade, CritiqueRequest, register_critic_backend

DEFAULT_SERVER = "rlpost-judge"
DEFAULT_NAMESPACE = "rlpost"
OUTPUT_CHARS = 200  # raw judge output kept in the info (and the cache) per sample

RATIONALE_CHARS = 600  # reasoning-format rationale kept in the info
DEFAULT_REASONING_MAX_TOKENS = 1024
DEFAULT_GRADE_MAX_TOKENS = 16


# --- transports: (reference, candidate) pairs -> raw judge output texts -----------------------------------------
class JudgeEngine:
    """A vLLM engine on a judge model directory: ``complete(pairs)`` -> raw output texts (batched).

    A directory with ``judge.json`` (``rlpost sft --task judge``): its own prompt template, token-id prompts
    encoded as in training, one output token constrained to the grade tokens. Without it: the full rubric prompt
    as text, free output of up to ``max_tokens`` tokens.
    """

    def __init__(self, model: str | Path, *, max_tokens: int | None = None, temperature: float = 0.0,
                 seed: int = 0, kv_cache_gib: int = 1, max_model_len: int | None = None, batch_size: int = 256,
                 answer: Literal["grade", "reasoning"] = "grade"):
        import multiprocessing

        from rlpost.judge.model import JUDGE_FILE, JudgePromptEncoder, JudgeSpec
        from rlpost.policy.vllm_engine import make_llm

        model = Path(model)
        if not (model / "config.json").is_file():
            raise FileNotFoundError(f"judge model {str(model)!r}: no config.json "
                                    f"(train one with `rlpost sft --task judge`)")
        if multiprocessing.current_process().daemon:
            # A daemonic process (a guarded reward worker) cannot start vLLM's engine-core child process.
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import SamplingParams

        self.model = str(model)
        self.batch_size = batch_size
        self.own_format = (model / JUDGE_FILE).is_file()
        self.answer = answer
        reasoning = answer == "reasoning"
        if self.own_format and reasoning and JudgeSpec.load(model).reasoning_tail is None:
            raise ValueError(f"judge checkpoint {str(model)!r} was not trained on the reasoning answer format (no "
                             "reasoning_tail in judge.json): retrain it, or use answer: grade")
        self.llm = make_llm(model, max_model_len=max_model_len, seed=seed, kv_cache_gib=kv_cache_gib)
        if self.own_format:
            from rlpost.policy.tokenizer import PolicyTokenizer

            self.spec = JudgeSpec.load(model)
            self.encoder = JudgePromptEncoder(PolicyTokenizer.load(model), self.spec)
            if reasoning:  # rationale, " Grade: N", then the end token (generation_config's eos_token_id)
                self.params = SamplingParams(max_tokens=max_tokens or DEFAULT_REASONING_MAX_TOKENS, temperature=0.0,
                                             skip_special_tokens=True)
            else:
                self.params = SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=list(self.spec.grade_ids),
                                             skip_special_tokens=True)
        else:
            default = DEFAULT_REASONING_MAX_TOKENS if reasoning else DEFAULT_GRADE_MAX_TOKENS
            self.params = SamplingParams(max_tokens=max_tokens or default, temperature=temperature, seed=seed)

    def complete(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """Raw answer texts."""
        return [a.text for a in self.answers(pairs)]

    def answers(self, pairs: Sequence[tuple[str, str]]) -> list[Answer]:
        """Answers with whether each stopped at ``max_tokens``."""
        out: list[Answer] = []
        reasoning = self.answer == "reasoning"
        for s in range(0, len(pairs), self.batch_size):
            chunk = pairs[s:s + self.batch_size]
            if self.own_format:
                prompts: list[Any] = [{"prompt_token_ids": self.encoder.encode(r, c, reasoning)} for r, c in chunk]
            else:
                prompts = [rubric_prompt(r, c, reasoning) for r, c in chunk]
            results = self.llm.generate(prompts, self.params, use_tqdm=False)
            out += [Answer(r.outputs[0].text, r.outputs[0].finish_reason == "length") if r.outputs else Answer("")
                    for r in results]
        return out


class _LocalTransport:
    name = "local"

    def __init__(self, **engine_options):
        self.engine = JudgeEngine(**engine_options)

    def complete(self, pairs):
        return self.engine.answers(pairs)


class _ActorTransport:
    name = "actor"

    def __init__(self, handle, timeout_s: float):
        self.handle, self.timeout_s = handle, timeout_s

    def complete(self, pairs):
        import ray

        return ray.get(self.handle.complete.remote(list(pairs)), timeout=self.timeout_s)


ADDRESS_ENV = "RLPOST_RAY_ADDRESS"  # set by start_judge_server in the process that starts the server


def ray_address_of_this_process() -> str | None:
    """The GCS address of the Ray cluster this process belongs to, without connecting: ``RLPOST_RAY_ADDRESS``
    (exported by ``start_judge_server`` for the processes its caller starts later), ``RAY_ADDRESS``, else the
    ``--gcs-address`` of the raylet that started an ancestor Ray worker (``RAY_RAYLET_PID``, inherited by a guarded
    reward worker of the RewardWorker actor). None when this process is not under a Ray cluster: never a guess
    such as ``address="auto"``, which on a shared machine can find another user's cluster."""
    for key in (ADDRESS_ENV, "RAY_ADDRESS"):
        if os.environ.get(key):
            return os.environ[key]
    pid = os.environ.get("RAY_RAYLET_PID")
    if pid and pid.isdigit():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
        except OSError:
            return None
        for i, a in enumerate(args):
            if a.startswith("--gcs-address="):
                return a.split("=", 1)[1]
            if a == "--gcs-address" and i + 1 < len(args):
                return args[i + 1]
    return None


def find_judge_server(name: str = DEFAULT_SERVER, namespace: str = DEFAULT_NAMESPACE, ray_address: str | None = None,
                      connect: bool = True):
    """The named JudgeServer actor's handle, or None. Connects this process to Ray first when it is not connected,
    ``connect`` is true and the cluster is known (``ray_address``, else :func:`ray_address_of_this_process`)."""
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a core dependency
        return None
    if not ray.is_initialized():
        address = ray_address or ray_address_of_this_process()
        if not (connect and address):
            return None
        # No environment of its own: this process inherits its deployment's (loopback for a local Ray, the
        # node's own addresses on a cluster) from the actor that started it.
        ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level="WARNING")
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


# --- the backend -----------------------------------------------------------------------------------------------
@register_critic_backend("judge", version="1")
class JudgeCritic:
    """Grades with a judge model (see the module docstring for the options and where the engine lives).

    model: judge model directory (vLLM, local or in the actor), or with ``endpoint`` the served judge's checkpoint
    folder (``judge.json`` + tokenizer: token-id prompts, grade tokens only); endpoint + model_name: an
    OpenAI-compatible server; engine: auto | actor | local; server / namespace / ray_address: the JudgeServer actor
    to use; api: completions | chat (endpoint); answer: grade | reasoning; prompt: rubric | compact (endpoint
    without ``model``: the full rubric, or the project judge's own template as text); max_tokens (default 16 for a
    free-text grade, 1024 for reasoning) / temperature: free-text judges; timeout_s: per request (endpoint) or per
    call (actor); batch_size: prompts per engine call or completions request.
    """

    name = "judge"
    version = "1"

    def __init__(self, *, model: str | None = None, endpoint: str | None = None, model_name: str | None = None,
                 engine: Literal["auto", "actor", "local"] = "auto", server: str = DEFAULT_SERVER,
                 namespace: str = DEFAULT_NAMESPACE, ray_address: str | None = None,
                 api: Literal["completions", "chat"] = "completions", prompt: Literal["rubric", "compact"] = "rubric",
                 answer: Literal["grade", "reasoning"] = "grade", max_tokens: int | None = None,
                 temperature: float = 0.0, timeout_s: float = 60.0, api_key_env: str | None = "OPENAI_API_KEY",
                 max_concurrency: int = 8, batch_size: int = 256, kv_cache_gib: int = 1, seed: int = 0):
        if engine not in ("auto", "actor", "local"):
            raise ValueError(f"judge: engine must be auto, actor or local, got {engine!r}")
        if api not in ("completions", "chat"):
            raise ValueError(f"judge: api must be completions or chat, got {api!r}")
        if prompt not in ("rubric", "compact"):
            raise ValueError(f"judge: prompt must be rubric or compact, got {prompt!r}")
        if answer not in ("grade", "reasoning"):
            raise ValueError(f"judge: answer must be grade or reasoning, got {answer!r}")
        if endpoint is None and model is None and engine != "actor":
            raise ValueError("judge: give `model` (a judge model directory served by vLLM), `endpoint` (an "
                             "OpenAI-compatible URL), or engine: actor (a running JudgeServer)")
        if endpoint is not None and model is not None and not (Path(model) / "judge.json").is_file():
            raise ValueError(f"judge: with `endpoint`, `model` must be the served judge's checkpoint folder (with "
                             f"judge.json and its tokenizer), and {str(model)!r} has no judge.json; for any other "
                             "served model leave `model` out and name it with model_name")
        self.options = dict(model=model, endpoint=endpoint, model_name=model_name, engine=engine, server=server,
                            namespace=namespace, ray_address=ray_address, api=api, prompt=prompt, answer=answer,
                            max_tokens=max_tokens, temperature=temperature, timeout_s=timeout_s,
                            api_key_env=api_key_env, max_concurrency=max_concurrency, batch_size=batch_size,
                            kv_cache_gib=kv_cache_gib, seed=seed)
        self._transport = None
        self._lock = threading.Lock()

    def transport(self):
        """The transport in use (built on first use): endpoint, actor or local."""
        with self._lock:
            if self._transport is None:
                self._transport = self._build()
            return self._transport

    def _build(self):
        o = self.options
        if o["endpoint"] is not None:
            default = DEFAULT_REASONING_MAX_TOKENS if o["answer"] == "reasoning" else DEFAULT_GRADE_MAX_TOKENS
            return EndpointTransport(o["endpoint"], model_name=o["model_name"], api=o["api"], answer=o["answer"],
                                     max_tokens=o["max_tokens"] or default, temperature=o["temperature"],
                                     timeout_s=o["timeout_s"], api_key_env=o["api_key_env"],
                                     max_concurrency=o["max_concurrency"], prompt=o["prompt"],
                                     checkpoint=o["model"], batch_size=o["batch_size"])
        if o["engine"] in ("auto", "actor"):
            handle = find_judge_server(o["server"], o["namespace"], o["ray_address"])
            if handle is not None:
                return _ActorTransport(handle, o["timeout_s"])
            if o["engine"] == "actor":
                raise RuntimeError(f"judge: no JudgeServer actor {o['server']!r} in Ray namespace {o['namespace']!r} "
                                   "(start it with rlpost.actors.judge_server.start_judge_server, "
                                   "or use engine: local)")
        return _LocalTransport(model=o["model"], max_tokens=o["max_tokens"], temperature=o["temperature"],
                               seed=o["seed"], kv_cache_gib=o["kv_cache_gib"], batch_size=o["batch_size"],
                               answer=o["answer"])

    def grade(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueGrade]:
        out: list[CritiqueGrade | None] = [None] * len(requests)
        todo = []
        for i, r in enumerate(requests):
            if not _clean(r.reference):
                out[i] = CritiqueGrade(None, "error",
                                       f"scenario {r.scenario_id!r} has no ground-truth trace to judge against")
            else:
                todo.append(i)
        if todo:
            transport = self.transport()
            answers = transport.complete([(requests[i].reference, requests[i].trace) for i in todo])
            if len(answers) != len(todo):
                raise RuntimeError(f"judge ({transport.name}) answered {len(answers)} outputs for {len(todo)} requests")
            for i, a in zip(todo, answers):
                out[i] = self._grade_one(transport.name, a)
        return out  # type: ignore[return-value]

    def _grade_one(self, transport: str, a: Any) -> CritiqueGrade:
        if isinstance(a, TransportFailure):
            return CritiqueGrade(None, a.kind, a.message, {"judge": transport})
        text, cut_off = (a.text, a.cut_off) if isinstance(a, Answer) else (a, False)  # the actor answers text
        raw = text[:OUTPUT_CHARS] if isinstance(text, str) else repr(text)[:OUTPUT_CHARS]
        details: dict[str, Any] = {"judge": transport, "judge_output": raw}
        if self.options["answer"] == "reasoning":
            grade, why, rationale = parse_reasoning(text, cut_off=cut_off)
            details["judge_rationale"] = rationale[:RATIONALE_CHARS]
        else:
            grade, why = parse_grade(text)
        if grade is None:
            return CritiqueGrade(0, "unparseable", why, details | {"unparseable": "judge_output"})
        return CritiqueGrade(grade, "ok", f"judge grade {grade}", details)
