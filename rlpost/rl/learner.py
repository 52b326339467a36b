"""The GRPO learner of one data-parallel rank: DeepSpeed engine, log-probs, the registry loss, weight export.

Plain torch + DeepSpeed, no Ray: ``rlpost.actors.learner`` wraps one ``GRPOLearner`` per rank in a Ray actor.
RL updates the whole backbone (token head and transformer). The flow-matching expert sits behind a stop-gradient
and receives no policy gradient (docs/design.md §6): with ``learner.expert = "frozen"`` it is left as SFT made it; with
``"flow"`` it keeps training by its own flow loss, conditioned on the *on-policy* prefixes (prompt + sampled trace +
``<|traj_start|>``, hidden states from the same forward the policy loss uses, detached) with the logged expert
controls as targets, so it follows the backbone's drifting features without any RL signal crossing the stop-gradient.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from rlpost.rl.config import LearnerConfig
from rlpost.rl.losses import Layout, PolicyLoss
from rlpost.rl.stream import StreamPlan, plan_stream, tensor_specs
from rlpost.rl.weights import WeightsMessage, pack_weights


@dataclass
class TrainBatch:
    """One rank's share of a GRPO step, sequences right-padded to a common length S.

    input_ids, attention_mask: ``(B, S)`` prompt + completion; completion_mask: ``(B, S)`` 1 where the token is a
    completion token (trace + trajectory), i.e. a position whose log-prob the loss uses; old_logp: ``(B, S)`` the
    sampler's log-prob of each completion token (0 elsewhere); advantages: ``(B,)``.
    Only with ``learner.expert = "flow"``: prefix_mask ``(B, S)`` bool, the expert's conditioning positions (prompt +
    trace + ``<|traj_start|>``; all False when the completion has no trajectory); expert_targets ``(B, 64, 2)``
    normalised expert controls of the scenario.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    old_logp: torch.Tensor
    advantages: torch.Tensor
    prefix_mask: torch.Tensor | None = None
    expert_targets: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def _map(self, fn) -> TrainBatch:
        """A batch of ``fn`` applied to every tensor field (absent optional fields stay None)."""
        return TrainBatch(*(None if t is None else fn(t) for t in (getattr(self, f.name) for f in fields(self))))

    def to(self, device: torch.device) -> TrainBatch:
        """The same batch on ``device`` (the learner's GPU; a no-op on CPU)."""
        return self._map(lambda t: t.to(device))

    def slice(self, start: int, stop: int) -> TrainBatch:
        return self._map(lambda t: t[start:stop])


def make_train_batch(prompts, completions, sampler_logps, advantages, pad_id: int,
                     prefix_lengths=None, expert_targets=None) -> TrainBatch:
    """Assemble a ``TrainBatch`` from per-sequence lists: prompt ids, completion ids, the sampler's per-token
    log-probs of the completion (same length as it) and one advantage per sequence; for the expert, optionally the
    prefix length of each sequence (tokens up to and including ``<|traj_start|>``, 0 = no trajectory) and its
    normalised ``(64, 2)`` target controls."""
    if not (len(prompts) == len(completions) == len(sampler_logps) == len(advantages)):
        raise ValueError("prompts/completions/sampler_logps/advantages: lengths differ")
    width = max(len(p) + len(c) for p, c in zip(prompts, completions))
    n = len(prompts)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    comp = torch.zeros((n, width), dtype=torch.float32)
    old = torch.zeros((n, width), dtype=torch.float32)
    for i, (p, c, lp) in enumerate(zip(prompts, completions, sampler_logps)):
        if len(lp) != len(c):
            raise ValueError(f"sampler_logps[{i}]: {len(lp)} log-probs for {len(c)} completion tokens")
        ids[i, : len(p) + len(c)] = torch.tensor(list(p) + list(c))
        attn[i, : len(p) + len(c)] = 1
        comp[i, len(p): len(p) + len(c)] = 1.0
        old[i, len(p): len(p) + len(c)] = torch.tensor(lp, dtype=torch.float32)
    batch = TrainBatch(ids, attn, comp, old, torch.as_tensor(advantages, dtype=torch.float32))
    if prefix_lengths is not None:
        if len(prefix_lengths) != n or expert_targets is None or len(expert_targets) != n:
            raise ValueError("prefix_lengths/expert_targets: need one of each per sequence")
        batch.prefix_mask = torch.arange(width)[None, :] < torch.as_tensor(prefix_lengths)[:, None]
        batch.expert_targets = torch.as_tensor(np.asarray(expert_targets), dtype=torch.float32)
    return batch


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_hidden: bool = False):
    """log π(x_t | x_<t) for every position: ``(B, S)``, 0 at t = 0 (nothing predicts the first token); with
    ``return_hidden`` also the last layer's hidden states ``(B, S, H)`` of the same forward.

    Raw model log-probs at temperature 1, the same quantity vLLM returns by default (``raw_logprobs``), so the
    sampler and the learner agree up to numerics on identical weights.
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=return_hidden)
    logits = out.logits[:, :-1].float()
    logp = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    logp = torch.cat([torch.zeros_like(logp[:, :1]), logp], dim=1)
    return (logp, out.hidden_states[-1]) if return_hidden else logp


@torch.no_grad()
def sequence_logprobs(model, token_ids: list[int]) -> list[float]:
    """Log-probs of ``token_ids[1:]`` under ``model`` for one unpadded sequence: the probe that checks an engine's
    weights against the model's (after a sync, or after loading a policy for evaluation)."""
    ids = torch.tensor([token_ids], device=next(model.parameters()).device)
    return token_logprobs(model, ids, torch.ones_like(ids))[0, 1:].tolist()


def micro_batch_loss(loss: PolicyLoss, logp: torch.Tensor, mb: TrainBatch, group_size: int, normalizer: float,
                     ref_logp: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The configured loss of one micro-batch (whole groups): logp, ref_logp ``(B, S)`` of the model(s) on
    ``mb``; ``normalizer`` of the whole step (``loss.normalizer``). The learner's only call into the loss."""
    return loss(logp, mb.old_logp, mb.advantages, mb.completion_mask, group_size=group_size, normalizer=normalizer,
                ref_logp=ref_logp)


class GRPOLearner:
    """One rank: the policy backbone in a DeepSpeed engine (+ a frozen reference when the loss needs one).

    Torch's AdamW is the client optimizer (DeepSpeed's CPU Adam costs a minute of JIT on these machines).
    The process must have RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set (the Ray actor does it).
    """

    def __init__(self, checkpoint: str | Path, cfg: LearnerConfig, per_rank_batch: int, group_size: int):
        import deepspeed
        from transformers import AutoModelForCausalLM

        self.cfg = cfg
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        layout = Layout(group_size=group_size, num_ranks=self.world, per_rank=per_rank_batch,
                        micro_batch=cfg.micro_batch)
        cfg.loss.check_layout(layout)  # before any model loads: RunConfig ran it too, a direct caller may not have

        from rlpost.common.runtime import init_deepspeed_distributed

        init_deepspeed_distributed("gloo" if not torch.cuda.is_available() else "nccl")
        model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
        if cfg.activation_checkpointing:
            # Non-reentrant: the recomputed forward sees the same autocast state and works under ZeRO-3's hooks.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        micro = layout.micro
        self.accum = per_rank_batch // micro
        self.micro = micro
        self.group_size = group_size
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        ds_config = {
            "train_batch_size": per_rank_batch * self.world,
            "train_micro_batch_size_per_gpu": micro,
            "gradient_accumulation_steps": self.accum,
            "gradient_clipping": cfg.grad_clip,
            "zero_optimization": {"stage": cfg.zero_stage},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
        }
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
        self.device = self.engine.device  # where DeepSpeed put the model: this rank's GPU, or the CPU
        self.reference = None
        if cfg.loss.needs_reference:
            self.reference = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
            self.reference.requires_grad_(False).to(self.device)
        self.checkpoint = Path(checkpoint)
        self.expert = self.expert_opt = None
        if cfg.expert == "flow":
            self._setup_expert()
        self.version = 0

    def _setup_expert(self) -> None:
        from rlpost.policy.expert import FlowActionExpert
        from rlpost.policy.model import load_model_config

        self.expert = FlowActionExpert.load(self.checkpoint)
        if self.expert is None:
            raise ValueError(f"learner.expert: 'flow' needs a checkpoint with an action expert; {self.checkpoint} has "
                             "none (SFT with model.expert.enabled=true), or set learner.expert=frozen")
        self.expert.to(self.device).train()
        self.expert_time_beta = load_model_config(self.checkpoint).expert.time_beta
        self.expert_opt = torch.optim.AdamW(self.expert.parameters(), lr=self.cfg.expert_lr,
                                            weight_decay=self.cfg.weight_decay)

    def update(self, batch: TrainBatch, normalizer: float) -> dict[str, float]:
        """One optimizer step over this rank's sequences (``accum`` micro-batches).

        normalizer: ``learner.loss.normalizer(...)`` of the whole step, the global count the loss divides by across
        all ranks, so the summed micro-batch losses equal the full-batch loss. DeepSpeed averages gradients over
        ranks, so each rank's loss is multiplied by the world size to turn that average back into the sum;
        ``scale_wrt_gas=False`` because the normalizer already covers the accumulation steps.
        """
        if len(batch) != self.micro * self.accum:
            raise ValueError(
                f"batch: expected {self.micro * self.accum} sequences on rank {self.rank}, got {len(batch)}")
        self.engine.train()
        totals: dict[str, float] = {}
        gap_sum = gap_n = 0.0
        if self.expert is not None:
            if batch.prefix_mask is None:
                raise ValueError("batch: learner.expert='flow' needs prefix_mask and expert_targets")
            flow_n = int(batch.prefix_mask.any(1).sum())
            flow_sum = 0.0
        for k in range(self.accum):
            mb = batch.slice(k * self.micro, (k + 1) * self.micro).to(self.device)
            with self._autocast():
                if self.expert is not None:
                    logp, hidden = token_logprobs(self.engine, mb.input_ids, mb.attention_mask, return_hidden=True)
                else:
                    logp = token_logprobs(self.engine, mb.input_ids, mb.attention_mask)
                ref_logp = None
                if self.reference is not None:
                    with torch.no_grad():
                        ref_logp = token_logprobs(self.reference, mb.input_ids, mb.attention_mask)
            if self.expert is not None:
                flow_sum += self._expert_backward(hidden.float(), mb, flow_n)
            loss, metrics = micro_batch_loss(self.cfg.loss, logp, mb, self.group_size, normalizer, ref_logp)
            self.engine.backward(loss * self.world, scale_wrt_gas=False)
            self.engine.step()
            with torch.no_grad():
                # Every micro-batch's forward runs before the optimizer step, so this is the gap between the
                # sampler and the learner on identical (or, with staleness, one-step-older) weights: free to log.
                m = mb.completion_mask
                gap_sum += float(((logp.detach() - mb.old_logp).abs() * m).sum())
                gap_n += float(m.sum())
            totals["loss"] = totals.get("loss", 0.0) + loss.item()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value / self.accum
        if self.expert is not None:
            self._expert_step(flow_n)
            totals["expert/flow_loss"] = flow_sum
        self.version += 1
        grad_norm = self.engine.get_global_grad_norm()
        totals["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
        totals["sampler_logp_gap"] = gap_sum / max(gap_n, 1.0)
        return totals

    def _autocast(self):
        """bf16 autocast of the policy forward (``learner.precision``); the loss, the optimizer and the weights the
        sync exports stay fp32 (``token_logprobs`` upcasts the logits before the log-softmax)."""
        if self.cfg.precision == "fp32":
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _expert_backward(self, hidden: torch.Tensor, mb: TrainBatch, total: int) -> float:
        """Accumulate the flow-loss gradient of this micro-batch's sequences that have a trajectory, weighted so the
        rank's micro-batches sum to the mean over its ``total`` such sequences. The prefix is detached inside
        ``flow_loss``: nothing reaches the backbone. Returns the weighted loss."""
        has = mb.prefix_mask.any(1)
        if not has.any():
            return 0.0
        loss = self.expert.flow_loss(hidden[has], mb.prefix_mask[has], mb.expert_targets[has], self.expert_time_beta)
        loss = loss * (int(has.sum()) / total)
        loss.backward()
        return float(loss.detach())

    def _expert_step(self, flow_n: int) -> None:
        """Average the expert's gradients over ranks (each holds the mean over its own sequences), clip, step."""
        import torch.distributed as dist

        if self.world > 1 and dist.is_initialized():
            for p in self.expert.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= self.world
        if flow_n or self.world > 1:
            torch.nn.utils.clip_grad_norm_(self.expert.parameters(), self.cfg.grad_clip)
            self.expert_opt.step()
        self.expert_opt.zero_grad(set_to_none=True)

    def _gathered(self, params: list | None = None):
        """Under ZeRO-3, a context holding ``params`` (default: all) gathered whole on every rank; collective."""
        if self.cfg.zero_stage == 3:
            import deepspeed

            params = list(self.engine.module.parameters()) if params is None else params
            return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
        return nullcontext()

    def stream_plan(self, bucket_mb: float) -> StreamPlan:
        """The plan of a streaming sync of the current weights: names, full shapes (ZeRO-3 partitions report
        theirs as ``ds_shape``), dtypes, buckets of at most ``bucket_mb`` MiB. Local: no collective."""
        shape_of = (lambda p: p.ds_shape) if self.cfg.zero_stage == 3 else None
        return plan_stream(tensor_specs(self.engine.module.named_parameters(), shape_of), bucket_mb * 2**20,
                           self.version)

    def stream_weights(self, plan: StreamPlan, address: tuple[str, int], names: list[str], timeout_s: float,
                       depth: int = 2) -> dict[str, float] | None:
        """Send the weights over the stream group at ``address`` (rank 0; ``names``: the group's members, rank 0
        first), bucket by bucket; returns rank 0's stage times [ms] (None on other ranks). Every rank must call
        it: under ZeRO-3 each bucket is gathered by all ranks (one bucket whole at a time, never the model), and
        rank 0 keeps entering the gathers after a failure so the other ranks never hang, then raises."""
        from contextlib import contextmanager

        from rlpost.rl.stream import open_group, send_stream

        params = [p for _, p in self.engine.module.named_parameters()]
        if [t.name for t in plan.tensors] != [n for n, _ in self.engine.module.named_parameters()]:
            raise ValueError(f"stream plan v{plan.version}: its tensors are not this model's parameters")

        @contextmanager
        def bucket_tensors(b: int):
            chunk = [params[i] for i, _ in plan.buckets[b].entries]
            with self._gathered(chunk):
                yield [p.data for p in chunk]

        if self.rank != 0:
            for b in range(len(plan.buckets)):
                with bucket_tensors(b):
                    pass
            return None
        t0 = time.perf_counter()
        try:
            group = open_group(address, 0, names, timeout_s)
        except BaseException:
            for b in range(len(plan.buckets)):  # the other ranks gather bucket by bucket regardless
                with bucket_tensors(b):
                    pass
            raise
        setup = time.perf_counter() - t0
        times = send_stream(group, plan, bucket_tensors, depth)
        times.setup, times.wall = setup, time.perf_counter() - t0
        return times.as_ms()

    def export_weights(self, bucket_mb: float) -> WeightsMessage | None:
        """The current weights as a bucketed message on rank 0 (None on other ranks). Collective under ZeRO-3:
        every rank must call it."""
        with self._gathered():
            if self.rank != 0:
                return None
            return pack_weights(self.engine.module.named_parameters(), self.version, bucket_mb)

    @torch.no_grad()
    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        """Log-probs of ``token_ids[1:]`` under the current weights (the weight-sync probe)."""
        with self._gathered():
            self.engine.eval()
            out = sequence_logprobs(self.engine.module, token_ids)
            self.engine.train()
        return out

    def save(self, directory: str | Path, client_state: dict) -> None:
        """DeepSpeed checkpoint (model, optimizer, engine counters) + ``client_state``; collective."""
        # DeepSpeed names the checkpoint global_step<N> and points its 'latest' file at it.
        if self.expert is not None:
            client_state = {**client_state, "expert": self.expert.state_dict(),
                            "expert_opt": self.expert_opt.state_dict()}
        self.engine.save_checkpoint(str(directory), client_state={**client_state, "version": self.version})

    def load(self, directory: str | Path) -> dict:
        """Restore a checkpoint written by ``save``; returns its client state."""
        import pickle

        try:
            _, client_state = self.engine.load_checkpoint(str(directory))
        except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as exc:
            raise ValueError(f"learner checkpoint {directory}: unreadable "
                             f"({exc.__class__.__name__}: {str(exc)[:200]}); "
                             "restore a good copy, or delete the folder to start the run over") from None
        if client_state is None:
            raise FileNotFoundError(f"no learner checkpoint under {directory}")
        self.version = int(client_state["version"])
        if self.expert is not None:
            if "expert" not in client_state:
                raise ValueError(f"learner checkpoint {directory}: written with learner.expert=frozen; resume with the "
                                 "same setting or start a new run")
            self.expert.load_state_dict(client_state.pop("expert"))
            self.expert_opt.load_state_dict(client_state.pop("expert_opt"))
        return client_state

    def save_pretrained(self, directory: str | Path) -> None:
        """A complete policy checkpoint (rank 0 writes; collective under ZeRO-3): the trained backbone, the start
        checkpoint's tokenizer, phase rules and model config, and the expert (trained, or the frozen SFT one), so
        ``rlpost eval``, vLLM and the next run load it like an SFT output."""
        from rlpost.policy.model import copy_policy_files

        with self._gathered():
            if self.rank == 0:
                self.engine.module.save_pretrained(str(directory), safe_serialization=True)
                copy_policy_files(self.checkpoint, directory)
                if self.expert is not None:
                    self.expert.save(directory)
