"""`rlpost eval CKPT --split val`: open-loop metrics of a policy checkpoint (docs/design.md §8).

Per scenario: one greedy completion (the main numbers; AR1 reports the most likely rollout) and ``K`` sampled ones
(minADE_K), both phase-constrained, with transformers or vLLM. Trajectories come two ways:

- **token**: the 128 trajectory tokens -> bin-centre controls -> unicycle rollout (v0 from the history);
- **expert**: the flow expert conditioned on the greedy trace (sample 0 from zeros = deterministic; K − 1 from noise).

Reported: ADE/FDE at 3 s and 6.4 s and minADE_K/minFDE_K for token, expert and a constant-velocity baseline;
decision accuracy (parsed trace vs labels: both axes exact, and per axis); consistency rate (the ``coc_consistency``
reward: parsed decision vs meta-actions detected on the token trajectory); collision rate (ego box 4×2 m vs the
agents' logged futures); comfort-violation rate (history ⊕ prediction vs the docs/design.md §2 bounds); reasoning grade
(the ``rubric`` critic, 0–5); parse rate and valid-trajectory rate. Printed as a table; written to ``eval.json``
(summary) and ``eval.parquet`` (one row per scenario).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from rlpost.domain.metrics import ade, collides, comfort_violations, fde, min_ade, min_fde
from rlpost.domain.trajectory import HORIZON, unicycle_rollout
from rlpost.policy.config import EvalConfig
from rlpost.policy.generate import decode_completion, expert_controls, hf_generate, prompt_ids, vllm_generate


def constant_velocity(v0: float) -> np.ndarray:
    """(64, 4) constant-velocity, straight-ahead baseline in the ego frame."""
    return unicycle_rollout(np.zeros((HORIZON, 2)), v0)


def agent_boxes(s):
    states = np.asarray(s.agent_states, dtype=np.float64)
    if states.size == 0:
        return np.zeros((0, HORIZON, 5)), np.zeros((0, HORIZON), bool)
    size = np.asarray(s.agent_size, dtype=np.float64)
    fut = states[:, -HORIZON:, :3]
    boxes = np.concatenate([fut, np.broadcast_to(size[:, None, :], fut.shape[:2] + (2,))], axis=-1)
    valid = np.asarray(s.agent_valid, bool)[:, -HORIZON:] & np.isfinite(boxes).all(-1)
    return np.nan_to_num(boxes), valid


def _decision_tuple(d) -> tuple:
    if d is None:
        return (None, None, None)
    val = lambda x: None if x is None else getattr(x, "value", x)  # noqa: E731
    return (val(d.longitudinal), val(d.lateral), val(d.direction))


def _displacement(prefix: str, pred: np.ndarray, gt: np.ndarray) -> dict:
    return {f"{prefix}_ade_3s": ade(pred, gt, 3.0), f"{prefix}_fde_3s": fde(pred, gt, 3.0),
            f"{prefix}_ade": ade(pred, gt), f"{prefix}_fde": fde(pred, gt)}


def evaluate_policy(policy, scenarios, cfg: EvalConfig, llm=None, log=print) -> tuple[dict, list[dict]]:
    """Metrics of ``policy`` on ``scenarios``: (summary dict, per-scenario rows)."""
    from rlpost.domain.coc import parse_trace

    t0 = time.time()
    tok = policy.tokenizer
    prompts = [prompt_ids(policy, s) for s in scenarios]
    kw = dict(temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed)
    if cfg.engine == "vllm":
        if llm is None:
            raise ValueError("eval.engine 'vllm' needs an engine (rlpost.policy.vllm_engine.make_llm(ckpt))")
        greedy = vllm_generate(llm, policy, prompts, greedy=True)
        samples = vllm_generate(llm, policy, prompts, greedy=False, num_samples=cfg.num_samples, **kw) \
            if cfg.num_samples > 1 else greedy
    else:
        greedy = hf_generate(policy, prompts, greedy=True, batch_size=cfg.batch_size)
        samples = hf_generate(policy, prompts, greedy=False, num_samples=cfg.num_samples, batch_size=cfg.batch_size,
                              **kw) if cfg.num_samples > 1 else greedy
    t_gen = time.time() - t0
    main = [g[0] for g in greedy]
    expert = None
    if policy.expert is not None:
        expert = expert_controls(policy, prompts, main, num_samples=cfg.num_samples, seed=cfg.seed,
                                 batch_size=cfg.batch_size)
    rows, completions = [], []
    for i, s in enumerate(scenarios):
        hist = np.asarray(s.history, dtype=np.float64)
        v0, gt = float(hist[-1, 3]), np.asarray(s.future, dtype=np.float64)
        cv = constant_velocity(v0)
        dec = decode_completion(tok, main[i], v0)
        token_states = dec.states if dec.states is not None else cv
        parsed = parse_trace(dec.trace)
        label = (s.decision_longitudinal, s.decision_lateral, s.decision_direction)
        pred = _decision_tuple(parsed.decision) if parsed.ok else (None, None, None)
        row = {"scenario_id": s.scenario_id, "trace": dec.trace, "parsed": bool(parsed.ok),
               "traj_valid": dec.states is not None, "decision_pred": "/".join(map(str, pred)),
               "decision_label": "/".join(map(str, label)), "decision_correct": pred == label,
               "lon_correct": pred[0] == label[0], "lat_correct": pred[1:] == label[1:],
               "prompt_tokens": len(prompts[i]), "completion_tokens": len(main[i])}
        row |= _displacement("token", token_states[:, :2], gt[:, :2])
        row |= _displacement("cv", cv[:, :2], gt[:, :2])
        sampled = [decode_completion(tok, c, v0).states for c in samples[i]]
        sampled = np.stack([x if x is not None else cv for x in sampled])
        row["token_min_ade"] = min_ade(sampled[..., :2], gt[:, :2])
        row["token_min_fde"] = min_fde(sampled[..., :2], gt[:, :2])
        if expert is not None:
            ex_states = unicycle_rollout(expert[i], v0)
            row |= _displacement("expert", ex_states[0, :, :2], gt[:, :2])
            row["expert_min_ade"] = min_ade(ex_states[..., :2], gt[:, :2])
            row["expert_min_fde"] = min_fde(ex_states[..., :2], gt[:, :2])
        boxes, valid = agent_boxes(s)
        row["collision"] = bool(collides(token_states, boxes, valid)) if boxes.shape[0] else False
        row["gt_collision"] = bool(collides(gt, boxes, valid)) if boxes.shape[0] else False
        row["comfort_violation"] = bool(comfort_violations(np.concatenate([hist, token_states]))["any"])
        rows.append({k: (float(v) if isinstance(v, np.floating | np.ndarray) else v) for k, v in row.items()})
        completions.append((s, dec))
    _rewards(rows, completions)
    summary = _summarise(rows, cfg)
    summary |= {"scenarios": len(rows), "engine": cfg.engine, "generation_seconds": t_gen,
                "seconds": time.time() - t0}
    return summary, rows


def _rewards(rows: list[dict], completions) -> None:
    """Consistency (``coc_consistency``) and reasoning grade (``rubric`` critic) per row; None where unavailable."""
    try:
        from rlpost.rewards.types import Completion

        comps = [Completion(s.scenario_id, 0, d.trace, d.controls, d.status)
                 for s, d in completions]
        scen = [s for s, _ in completions]
    except ImportError:
        return
    try:
        from rlpost.rewards.coc_consistency import coc_consistency

        for row, r in zip(rows, coc_consistency(comps, scen)):
            row["consistency"] = float(r.value)
    except ImportError:  # rlpost.domain.consistency not installed yet
        pass
    try:
        from rlpost.rewards.critic import reasoning_critic

        for row, r in zip(rows, reasoning_critic(comps, scen, backend="rubric", normalise=False)):
            row["reasoning_grade"] = float(r.value) if r.status in ("ok", "unparseable") else None
    except ImportError:
        pass


def _mean(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _summarise(rows: list[dict], cfg: EvalConfig) -> dict:
    keys = ["token_ade", "token_fde", "token_ade_3s", "token_fde_3s", "token_min_ade", "token_min_fde",
            "expert_ade", "expert_fde", "expert_ade_3s", "expert_fde_3s", "expert_min_ade", "expert_min_fde",
            "cv_ade", "cv_fde", "cv_ade_3s", "cv_fde_3s", "decision_correct", "lon_correct", "lat_correct",
            "consistency", "reasoning_grade", "collision", "gt_collision", "comfort_violation", "parsed", "traj_valid"]
    out = {}
    for k in keys:
        name = {"decision_correct": "decision_accuracy", "lon_correct": "lon_accuracy", "lat_correct": "lat_accuracy",
                "consistency": "consistency_rate", "collision": "collision_rate", "gt_collision": "gt_collision_rate",
                "comfort_violation": "comfort_violation_rate", "parsed": "parse_rate",
                "traj_valid": "traj_valid_rate"}.get(k, k)
        name = name.replace("min_ade", f"min_ade_{cfg.num_samples}").replace("min_fde", f"min_fde_{cfg.num_samples}")
        out[name] = _mean(rows, k)
    return out


def format_table(summary: dict) -> str:
    """The summary as an aligned text table (ADE rows: token / expert / constant velocity)."""
    lines = [f"{'metric':<28}{'token':>10}{'expert':>10}{'const-vel':>10}"]
    for m in ("ade_3s", "fde_3s", "ade", "fde"):
        label = m.replace("ade", "ADE").replace("fde", "FDE") + ("" if "_3s" in m else "@6.4s")
        vals = [summary.get(f"{p}_{m}") for p in ("token", "expert", "cv")]
        lines.append(f"{label:<28}" + "".join(f"{v:>10.3f}" if v is not None else f"{'-':>10}" for v in vals))
    for k in [k for k in summary if "min_ade" in k or "min_fde" in k]:
        if k.startswith("token"):
            e = summary.get(k.replace("token", "expert"))
            lines.append(f"{k[6:]:<28}{summary[k]:>10.3f}" + (f"{e:>10.3f}" if e is not None else f"{'-':>10}"))
    for k in ("decision_accuracy", "lon_accuracy", "lat_accuracy", "consistency_rate", "reasoning_grade",
              "collision_rate", "gt_collision_rate", "comfort_violation_rate", "parse_rate", "traj_valid_rate",
              "scenarios", "seconds"):
        v = summary.get(k)
        lines.append(f"{k:<28}{(f'{v:.3f}' if isinstance(v, float) else str(v)):>10}")
    return "\n".join(lines)


def run_eval(ckpt: str | Path, cfg: EvalConfig, scenarios=None, log=print) -> dict:
    """Load ``ckpt``, evaluate on ``cfg.split`` of ``cfg.data`` (or ``scenarios``), print and write the results."""
    from rlpost.common.errors import require_checkpoint
    from rlpost.common.runtime import configure_cpu_runtime
    from rlpost.policy.model import load_policy

    require_checkpoint(ckpt, "checkpoint")
    configure_cpu_runtime(threads=cfg.threads)
    if scenarios is None:
        from rlpost.scenarios.schema import read_scenarios

        scenarios = read_scenarios(cfg.data, cfg.split)
    if cfg.max_scenarios:
        scenarios = scenarios[: cfg.max_scenarios]
    policy = load_policy(ckpt)
    llm = None
    if cfg.engine == "vllm":
        from rlpost.policy.vllm_engine import make_llm

        llm = make_llm(ckpt, seed=cfg.seed)
    summary, rows = evaluate_policy(policy, scenarios, cfg, llm=llm, log=log)
    summary["checkpoint"] = str(ckpt)
    summary["split"] = cfg.split
    out = Path(cfg.out) if cfg.out else Path(ckpt) / f"eval_{cfg.split}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(summary, indent=1))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), out / "eval.parquet")
    log(format_table(summary))
    log(f"eval: wrote {out / 'eval.json'} and {out / 'eval.parquet'}")
    return summary
