"""The ``judge`` critic backend of ``reasoning_critic`` (docs/design.md §5.1): a language model grades the trace 0–5.

Config (the reward's params; give the component ``cache: true`` and a deadline that fits the judge)::

    # the project's own judge (or any local HF model directory) served by vLLM
    - {name: reasoning_critic, weight: 0.2, cache: true, deadline_s: 60,
       params: {backend: judge, model: runs/judge/final}}
    # any OpenAI-compatible server (vLLM serve, a hosted LLM): the full docs/design.md §5.1 rubric as the prompt
    - {name: reasoning_critic, weight: 0.2, cache: true, deadline_s: 120,
       params: {backend: judge, endpoint: "http://127.0.0.1:8000/v1", model_name: judge, api: chat}}

Where the vLLM engine lives (``engine`` option, default ``auto``):
- ``actor``: a named Ray actor :class:`rlpost.actors.judge_server.JudgeServer` (name ``server``, namespace ``namespace``),
  started once by whoever builds the run (``rlpost.actors.judge_server.start_judge_server``). Reward functions run in
  guarded worker processes (``rewards/guard.py``) that are killed on a timeout and restarted; an engine inside one
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

An ``endpoint`` (OpenAI-compatible base URL ending in ``/v1``) bypasses both: ``api: completions`` sends one
batched request (a list of prompts), ``api: chat`` one chat request per sample (``max_concurrency`` at a time).

Every transport returns raw text; :func:`parse_grade` reads the integer 0–5 strictly (the whole answer must be
the grade, optionally as ``Grade: 4``, ``4/5``, ``**4**`` or after a closed ``<think>…</think>`` block).
Malformed output gives status ``unparseable`` (grade 0) with the raw output in the info, so a judge that stops
following the format shows up in ``rewards/reasoning_critic/unparseable``. A missing ground truth is status
error without a judge call (a data defect). A transport failure (endpoint down, actor dead) raises: the guard
turns that into status error for the batch, which is not cached.

The project's judge checkpoint (``rlpost sft --task judge``, ``rlpost.judge.sft``) carries ``judge.json``: its
prompt template and grade token ids. Served locally or by the actor, decoding is constrained to those 6 tokens
(vLLM ``allowed_token_ids``) with one output token; the parse stays strict anyway. A model directory without
``judge.json`` (a real instruction LLM on a GPU) gets the full rubric prompt and free text (``max_tokens``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from rlpost.rewards.critic_backends import MAX_GRADE, CritiqueGrade, CritiqueRequest, register_critic_backend

DEFAULT_SERVER = "rlpost-judge"
DEFAULT_NAMESPACE = "rlpost"
OUTPUT_CHARS = 200  # raw judge output kept in the info (and the cache) per sample

# docs/design.md §5.1's rubric, for judges that read instructions (OpenAI-compatible endpoints, instruction models).
RUBRIC_INSTRUCTIONS = """\
You grade the reasoning of an autonomous-driving policy. Compare the CANDIDATE chain-of-causation trace with the \
REFERENCE (ground-truth) trace of the same driving scene: the driving decision on each axis (longitudinal: \
set-speed tracking, lead-obstacle following, speed adaptation, gap searching, acceleration for passing, yield, \
stop for static constraints; lateral: lane keeping, merge/split, out-of-lane nudge, in-lane nudge, lane change, \
pull-over, turn, lateral-manoeuvre abort; with left/right where it applies) and the causal factors it cites \
(critical objects, traffic lights, yield/stop controls, road events, lanes, routing intent, operating-domain \
constraints). Grade the text only, on an integer scale:
5 = behaviour and causal reasoning fully consistent with the reference;
4 = behaviour correct, reasoning mostly consistent;
3 = behaviour roughly correct, reasoning incomplete or slightly wrong;
2 = behaviour partly wrong, or reasoning largely inconsistent;
1 = behaviour wrong or contradicts the reference;
0 = unrelated or opposite.
Answer with the grade as a single digit (0-5) and nothing else."""
RUBRIC_USER = "REFERENCE: {reference}\nCANDIDATE: {candidate}\nGrade:"


def rubric_prompt(reference: str, candidate: str) -> str:
    """The full-rubric prompt for a completions endpoint or an instruction model without ``judge.json``."""
    return RUBRIC_INSTRUCTIONS + "\n\n" + RUBRIC_USER.format(reference=_clean(reference), candidate=_clean(candidate))


def _clean(text: Any) -> str:
    return " ".join(text.split()) if isinstance(text, str) else ""


# --- the strict grade parser -----------------------------------------------------------------------------------
_THINK_RE = re.compile(r"^\s*<think>.*?</think>", re.S | re.I)
_GRADE_RE = re.compile(r"(?:grade\s*[:=]?\s*)?(\*\*|\*)?([0-9]+)\1?(?:\s*/\s*5)?\s*\.?", re.I)


def parse_grade(text: Any) -> tuple[int | None, str]:
    """``(grade, "")`` when the whole output is one integer 0–5, else ``(None, why)``.

    Accepted forms (surrounding whitespace ignored): ``4``, ``4.``, ``Grade: 4``, ``grade 4/5``, ``**4**``, and any
    of these after a closed leading ``<think>…</think>`` block. Everything else is malformed: empty output, other
    words ("The grade is 4", "four"), two numbers ("3 or 4", "3\\n4"), decimals, negatives, numbers above 5.
    """
    if not isinstance(text, str):
        return None, f"judge output is {type(text).__name__}, not text"
    t = _THINK_RE.sub("", text, count=1).strip()
    if not t:
        return None, "empty judge output" if "<think>" not in text.lower() else "judge output has no answer after its reasoning"
    if "<think>" in t.lower():
        return None, "judge reasoning (<think>) not closed"
    m = _GRADE_RE.fullmatch(t)
    if m is None:
        return None, f"judge output is not a single grade: {t[:60]!r}"
    value = int(m.group(2))
    if not 0 <= value <= MAX_GRADE or len(m.group(2)) > 1:
        return None, f"judge grade {m.group(2)} outside 0..{MAX_GRADE}"
    return value, ""


# --- transports: (reference, candidate) pairs -> raw judge output texts -----------------------------------------
class JudgeEngine:
    """A vLLM engine on a judge model directory: ``complete(pairs)`` -> raw output texts (batched).

    A directory with ``judge.json`` (``rlpost sft --task judge``): its own prompt template, token-id prompts
    encoded as in training, one output token constrained to the grade tokens. Without it: the full rubric prompt
    as text, free output of up to ``max_tokens`` tokens.
    """

    def __init__(self, model: str | Path, *, max_tokens: int | None = None, temperature: float = 0.0,
                 seed: int = 0, kv_cache_gib: int = 1, max_model_len: int | None = None, batch_size: int = 256):
        import multiprocessing

        from rlpost.judge.model import JUDGE_FILE, JudgePromptEncoder, JudgeSpec
        from rlpost.policy.vllm_engine import make_llm

        model = Path(model)
        if not (model / "config.json").is_file():
            raise FileNotFoundError(f"judge model {str(model)!r}: no config.json (train one with `rlpost sft --task judge`)")
        if multiprocessing.current_process().daemon:
            # A daemonic process (a guarded reward worker) cannot start vLLM's engine-core child process.
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        from vllm import SamplingParams

        self.model = str(model)
        self.batch_size = batch_size
        self.own_format = (model / JUDGE_FILE).is_file()
        self.llm = make_llm(model, max_model_len=max_model_len, seed=seed, kv_cache_gib=kv_cache_gib)
        if self.own_format:
            from rlpost.policy.tokenizer import PolicyTokenizer

            self.spec = JudgeSpec.load(model)
            self.encoder = JudgePromptEncoder(PolicyTokenizer.load(model), self.spec)
            self.params = SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=list(self.spec.grade_ids),
                                         skip_special_tokens=True)
        else:
            self.params = SamplingParams(max_tokens=max_tokens or 16, temperature=temperature, seed=seed)

    def complete(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        out: list[str] = []
        for s in range(0, len(pairs), self.batch_size):
            chunk = pairs[s:s + self.batch_size]
            if self.own_format:
                prompts: list[Any] = [{"prompt_token_ids": self.encoder.encode(r, c)} for r, c in chunk]
            else:
                prompts = [rubric_prompt(r, c) for r, c in chunk]
            results = self.llm.generate(prompts, self.params, use_tqdm=False)
            out += [r.outputs[0].text if r.outputs else "" for r in results]
        return out


class _LocalTransport:
    name = "local"

    def __init__(self, **engine_options):
        self.engine = JudgeEngine(**engine_options)

    def complete(self, pairs):
        return self.engine.complete(pairs)


class _ActorTransport:
    name = "actor"

    def __init__(self, handle, timeout_s: float):
        self.handle, self.timeout_s = handle, timeout_s

    def complete(self, pairs):
        import ray

        return ray.get(self.handle.complete.remote(list(pairs)), timeout=self.timeout_s)


class _EndpointTransport:
    """An OpenAI-compatible server: ``/completions`` (one batched request) or ``/chat/completions`` (per sample)."""

    name = "endpoint"

    def __init__(self, endpoint: str, model_name: str | None, api: str, max_tokens: int, temperature: float,
                 timeout_s: float, api_key_env: str | None, max_concurrency: int, prompt: str):
        self.base = endpoint.rstrip("/")
        self.model_name, self.api = model_name, api
        self.max_tokens, self.temperature, self.timeout_s = max_tokens, temperature, timeout_s
        self.api_key = os.environ.get(api_key_env) if api_key_env else None
        self.max_concurrency = max_concurrency
        self.prompt = prompt

    def _post(self, path: str, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise RuntimeError(f"judge endpoint {self.base}{path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise RuntimeError(f"judge endpoint {self.base}{path} unreachable: {exc}") from None

    def _body(self) -> dict:
        body: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.model_name:
            body["model"] = self.model_name
        return body

    def _text_prompt(self, reference: str, candidate: str) -> str:
        if self.prompt == "compact":  # the project's judge model served by `vllm serve`
            from rlpost.judge.model import judge_prompt

            return judge_prompt(reference, candidate)
        return rubric_prompt(reference, candidate)

    def complete(self, pairs):
        if not pairs:
            return []
        if self.api == "completions":
            data = self._post("/completions", self._body() | {"prompt": [self._text_prompt(r, c) for r, c in pairs]})
            texts = [""] * len(pairs)
            for i, choice in enumerate(data.get("choices") or []):
                idx = choice.get("index", i)
                if isinstance(idx, int) and 0 <= idx < len(pairs):
                    texts[idx] = choice.get("text") or ""
            return texts

        def one(pair):
            r, c = pair
            messages = [{"role": "system", "content": RUBRIC_INSTRUCTIONS},
                        {"role": "user", "content": RUBRIC_USER.format(reference=_clean(r), candidate=_clean(c))}]
            data = self._post("/chat/completions", self._body() | {"messages": messages})
            choices = data.get("choices") or [{}]
            return ((choices[0].get("message") or {}).get("content")) or ""

        with ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(pairs)))) as pool:
            return list(pool.map(one, pairs))


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
        from rlpost.common.runtime import LOOPBACK_ENV

        for k, v in LOOPBACK_ENV.items():
            os.environ.setdefault(k, v)
        ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level="WARNING")
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


# --- the backend -----------------------------------------------------------------------------------------------
@register_critic_backend("judge", version="1")
class JudgeCritic:
    """Grades with a judge model (see the module docstring for the options and where the engine lives).

    model: judge model directory (vLLM, local or in the actor); endpoint + model_name: an OpenAI-compatible server
    instead; engine: auto | actor | local; server / namespace / ray_address: the JudgeServer actor to use;
    api: completions | chat (endpoint); prompt: rubric | compact (endpoint: the full rubric, or the project judge's
    own template when it is served by ``vllm serve``); max_tokens / temperature: free-text judges; timeout_s: per
    request (endpoint) or per call (actor); batch_size: requests per engine call.
    """

    name = "judge"
    version = "1"

    def __init__(self, *, model: str | None = None, endpoint: str | None = None, model_name: str | None = None,
                 engine: Literal["auto", "actor", "local"] = "auto", server: str = DEFAULT_SERVER,
                 namespace: str = DEFAULT_NAMESPACE, ray_address: str | None = None,
                 api: Literal["completions", "chat"] = "completions", prompt: Literal["rubric", "compact"] = "rubric",
                 max_tokens: int = 16, temperature: float = 0.0, timeout_s: float = 60.0,
                 api_key_env: str | None = "OPENAI_API_KEY", max_concurrency: int = 8, batch_size: int = 256,
                 kv_cache_gib: int = 1, seed: int = 0):
        if engine not in ("auto", "actor", "local"):
            raise ValueError(f"judge: engine must be auto, actor or local, got {engine!r}")
        if api not in ("completions", "chat"):
            raise ValueError(f"judge: api must be completions or chat, got {api!r}")
        if prompt not in ("rubric", "compact"):
            raise ValueError(f"judge: prompt must be rubric or compact, got {prompt!r}")
        if endpoint is None and model is None and engine != "actor":
            raise ValueError("judge: give `model` (a judge model directory served by vLLM), `endpoint` (an "
                             "OpenAI-compatible URL), or engine: actor (a running JudgeServer)")
        if endpoint is not None and model is not None:
            raise ValueError("judge: give either `model` or `endpoint`, not both (use model_name for the endpoint's model)")
        self.options = dict(model=model, endpoint=endpoint, model_name=model_name, engine=engine, server=server,
                            namespace=namespace, ray_address=ray_address, api=api, prompt=prompt,
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
            return _EndpointTransport(o["endpoint"], o["model_name"], o["api"], o["max_tokens"], o["temperature"],
                                      o["timeout_s"], o["api_key_env"], o["max_concurrency"], o["prompt"])
        if o["engine"] in ("auto", "actor"):
            handle = find_judge_server(o["server"], o["namespace"], o["ray_address"])
            if handle is not None:
                return _ActorTransport(handle, o["timeout_s"])
            if o["engine"] == "actor":
                raise RuntimeError(f"judge: no JudgeServer actor {o['server']!r} in Ray namespace {o['namespace']!r} "
                                   "(start it with rlpost.actors.judge_server.start_judge_server, or use engine: local)")
        return _LocalTransport(model=o["model"], max_tokens=o["max_tokens"], temperature=o["temperature"],
                               seed=o["seed"], kv_cache_gib=o["kv_cache_gib"], batch_size=o["batch_size"])

    def grade(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueGrade]:
        out: list[CritiqueGrade | None] = [None] * len(requests)
        todo = []
        for i, r in enumerate(requests):
            if not _clean(r.reference):
                out[i] = CritiqueGrade(None, "error", f"scenario {r.scenario_id!r} has no ground-truth trace to judge against")
            else:
                todo.append(i)
        if todo:
            transport = self.transport()
            texts = transport.complete([(requests[i].reference, requests[i].trace) for i in todo])
            if len(texts) != len(todo):
                raise RuntimeError(f"judge ({transport.name}) answered {len(texts)} outputs for {len(todo)} requests")
            for i, text in zip(todo, texts):
                grade, why = parse_grade(text)
                raw = text[:OUTPUT_CHARS] if isinstance(text, str) else repr(text)[:OUTPUT_CHARS]
                details = {"judge": transport.name, "judge_output": raw}
                if grade is None:
                    out[i] = CritiqueGrade(0, "unparseable", why, details | {"unparseable": "judge_output"})
                else:
                    out[i] = CritiqueGrade(grade, "ok", f"judge grade {grade}", details)
        return out  # type: ignore[return-value]
