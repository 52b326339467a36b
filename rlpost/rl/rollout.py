"""Rollout generation on a vLLM engine and the rollout record, the unit of the Parquet log (no Ray here).

``RolloutEngine`` samples G completions per scenario under the policy's phase-constrained decoding, keeps the
sampler's per-token log-probs, decodes trace and trajectory, and stamps every record with the policy version.
Weights arrive as a ``WeightsMessage`` (object store) or as a stream of buckets (``receive_weights``) and are
loaded in place through vLLM's public ``collective_rpc`` into the worker's ``reload_weights`` (``load_weights``
does not work after start-up on the CPU backend).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlpost.domain.decode import DecodeStatus
from rlpost.rewards.compose import ComponentRecord
from rlpost.rewards.types import Completion
from rlpost.rl.config import RolloutConfig
from rlpost.rl.stream import StreamPlan
from rlpost.rl.weights import WeightsMessage, verify_weights


@dataclass(frozen=True)
class GenerateRequest:
    """One generate call on one engine: G = ``group_size`` samples for each of ``scenarios``.

    step and seed fix the sampling seeds (``sample_seed``), so a reissued request samples the same completions;
    the engine refuses it while it holds weights older than ``min_version`` (``StaleEngineError``).
    """

    scenarios: list
    group_size: int
    run: str
    step: int
    seed: int
    curation_round: int = 0
    min_version: int = 0


@dataclass
class RolloutRecord:
    """One sampled completion with everything needed to learn from it and to audit it later.

    prompt_ids / completion_ids: token ids (the completion as generated, ``<|traj_end|>`` included);
    sampler_logprobs: the sampler's log-prob of each completion token (same length);
    controls ``(64, 2)`` / waypoints ``(64, 4)``: the decoded trajectory, None when it could not be decoded
    (``decode_status`` says why); rewards: component name -> its typed ``ComponentRecord`` (flattened only by the
    Parquet writer); reward_total; advantage.
    """

    run: str
    step: int
    scenario_id: str
    group_index: int
    policy_version: int
    curation_round: int
    prompt_ids: list[int]
    completion_ids: list[int]
    sampler_logprobs: list[float]
    trace: str
    controls: np.ndarray | None
    waypoints: np.ndarray | None
    finish_reason: str
    decode_status: DecodeStatus = "ok"
    rewards: dict[str, ComponentRecord] = field(default_factory=dict)
    reward_total: float = float("nan")
    advantage: float = float("nan")

    @property
    def record_id(self) -> str:
        """Unique per run: (step, scenario, group index)."""
        return f"{self.run}/{self.step}/{self.scenario_id}/{self.group_index}"

    def completion(self) -> Completion:
        """The record as the reward functions see it."""
        return Completion(self.scenario_id, self.group_index, self.trace, self.controls, self.decode_status,
                          tuple(self.completion_ids))


class StaleEngineError(RuntimeError):
    """The engine holds older weights than the caller requires (e.g. it was just restarted from the start
    checkpoint): it refuses to generate rather than stamp samples from the wrong policy."""


def sample_seed(run_seed: int, step: int, scenario_index: int) -> int:
    """Deterministic per-request sampling seed (vLLM gives child sample i the seed + i), so a resumed run
    regenerates exactly what the uninterrupted run generated."""
    return (run_seed * 1_000_003 + step * 10_007 + scenario_index * 101) % (2**31 - 1)


class RolloutEngine:
    """A vLLM engine over a policy checkpoint plus the policy's tokenizer and prompt encoder."""

    def __init__(self, checkpoint: str | Path, cfg: RolloutConfig, seed: int = 0):
        from rlpost.policy.constraints import PhaseRules
        from rlpost.policy.model import Policy, load_model_config
        from rlpost.policy.tokenizer import PolicyTokenizer
        from rlpost.policy.vllm_engine import make_llm

        d = Path(checkpoint)
        # Only the tokenizer, rules and config are needed beside vLLM: the torch backbone is not loaded twice.
        self.policy = Policy(None, PolicyTokenizer.load(d), PhaseRules.load(d), None, load_model_config(d))
        self.cfg = cfg
        # Whole-prompt prefills only: when vLLM splits a prompt over steps it discards the partial step's sample and
        # rewinds that request's seeded generator, which CPU generators cannot do ("CPU Generator does not use
        # offset"). Seeded requests are what makes a resumed run regenerate the same samples, so keep them and
        # schedule prompts whole instead.
        gpu = {"gpu_memory_utilization": cfg.gpu_memory_utilization} if cfg.num_gpus > 0 else {}
        self.llm = make_llm(d, seed=seed, kv_cache_gib=cfg.kv_cache_gib, in_process=cfg.in_process,
                            enable_chunked_prefill=False, max_num_batched_tokens=cfg.max_batched_tokens, **gpu)
        self.version = 0

    def generate(self, request: GenerateRequest, temperature: float | None = None) -> list[RolloutRecord]:
        """G = ``request.group_size`` completions per scenario, grouped contiguously, stamped with the current
        version. Raises ``StaleEngineError`` when the engine's version is below ``request.min_version``."""
        if self.version < request.min_version:
            raise StaleEngineError(f"engine at policy v{self.version}, caller requires >= v{request.min_version}")
        scenarios, group_size = request.scenarios, request.group_size
        from rlpost.policy.generate import decode_completion, max_new_tokens, prompt_ids
        from rlpost.policy.vllm_engine import sampling_params

        prompts = [prompt_ids(self.policy, s) for s in scenarios]
        params = [
            sampling_params(max_new_tokens(self.policy), temperature=temperature or self.cfg.temperature,
                            top_p=self.cfg.top_p, n=group_size, seed=sample_seed(request.seed, request.step, i),
                            logprobs=0)
            for i in range(len(scenarios))
        ]
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        records = []
        for scenario, prompt, out in zip(scenarios, prompts, outputs):
            v0 = float(scenario.history[-1, 3])
            for g, sample in enumerate(sorted(out.outputs, key=lambda o: o.index)):
                ids = list(sample.token_ids)
                logps = [float(pos[tok].logprob) for tok, pos in zip(ids, sample.logprobs)]
                decoded = decode_completion(self.policy.tokenizer, ids, v0)
                records.append(RolloutRecord(
                    run=request.run, step=request.step, scenario_id=scenario.scenario_id, group_index=g,
                    policy_version=self.version, curation_round=request.curation_round, prompt_ids=list(prompt),
                    completion_ids=ids, sampler_logprobs=logps, trace=decoded.trace, controls=decoded.controls,
                    waypoints=decoded.states, finish_reason=str(sample.finish_reason), decode_status=decoded.status,
                ))
        return records

    def load_weights(self, message: WeightsMessage) -> dict:
        """Verify the checksum, load the tensors in place, drop cached prefixes; returns version and timing
        (sync_ms: the whole call; integrity_ms / load_ms: its parts) [ms]."""
        t0 = time.perf_counter()
        verify_weights(message)
        t_verified = time.perf_counter()
        if self.cfg.in_process:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(list(message.named_tensors()))})
        else:
            # Tensors cannot travel through collective_rpc to an engine in another process: go through /dev/shm.
            import tempfile

            from safetensors.torch import save_file

            with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
                save_file(dict(message.named_tensors()), str(Path(tmp) / "model.safetensors"))
                self.llm.collective_rpc("reload_weights", kwargs={"weights_path": tmp})
        self._after_reload(message.version)
        t1 = time.perf_counter()
        return {"version": self.version, "sync_ms": 1000 * (t1 - t0), "bytes": message.num_bytes,
                "integrity_ms": 1000 * (t_verified - t0), "load_ms": 1000 * (t1 - t_verified)}

    def receive_weights(self, plan: StreamPlan, address: tuple[str, int], rank: int, names: list[str],
                        timeout_s: float, depth: int = 2) -> dict:
        """Join the weight stream at ``address`` as ``rank`` and load its buckets in place as they arrive: vLLM's
        ``reload_weights`` consumes a lazy iterator fed by a receive thread (``rlpost.rl.stream.WeightStream``), so
        receiving and checking bucket k+1 overlaps loading bucket k. Returns version, bytes and the stage times
        [ms]. A failure midway leaves this engine's weights undefined (the sync fails naming it; the probe would
        catch a half-loaded engine that the caller kept)."""
        from rlpost.rl.stream import WeightStream, open_group

        if not self.cfg.in_process:
            raise ValueError("sync.transport: 'stream' feeds vLLM's reload_weights a live iterator, which only an "
                             "in-process engine can take; set rollout.in_process=true or sync.transport=object_store")
        t0 = time.perf_counter()
        group = open_group(address, rank, names, timeout_s)
        setup = time.perf_counter() - t0
        stream = WeightStream(group, plan, timeout_s, depth)
        t1 = time.perf_counter()
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(stream)})
        except BaseException:
            stream.close()
            raise
        stream.finish()
        t2 = time.perf_counter()
        self._after_reload(plan.version)
        times = stream.times
        times.setup, times.load, times.wall = setup, (t2 - t1) - stream.wait_s + (time.perf_counter() - t2), \
            time.perf_counter() - t0
        return {"version": self.version, "bytes": plan.num_bytes, **times.as_ms()}

    def _after_reload(self, version: int) -> None:
        from rlpost.policy.vllm_engine import repack_tied_head

        self.llm.collective_rpc(repack_tied_head)  # a tied head keeps its old kernel weights otherwise (see there)
        self.llm.reset_prefix_cache()
        self.version = version

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        """The engine's log-probs of ``token_ids[1:]`` (prompt log-probs): compared with the learner's after a sync."""
        from vllm import SamplingParams

        out = self.llm.generate([{"prompt_token_ids": token_ids}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                                use_tqdm=False)[0]
        return [float(pos[tok].logprob) for tok, pos in zip(token_ids[1:], out.prompt_logprobs[1:])]
