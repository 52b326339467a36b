"""The GRPO loop: select → generate → score → advantages → update → sync → re-curate → log → checkpoint.

The one module that drives Ray (through ``rlpost.actors.cluster``); everything it calls is a one-verb method or a
pure function of ``rlpost.loop.steps``. ``trainer.staleness`` = 0 is on-policy; 1 launches the generation of step
k+1 before the update of step k, so the two overlap and every sample is at most one policy version old.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from rlpost.actors.cluster import Cluster
from rlpost.common import metric_names as M
from rlpost.loop.selection import Selection
from rlpost.loop.steps import assign_advantages, check_staleness, expert_inputs, reward_means
from rlpost.policy.tokenizer import PAD, PolicyTokenizer
from rlpost.rewards.budget import check_error_budget
from rlpost.rl.config import RunConfig
from rlpost.storage.local_redis import LocalRedisServer
from rlpost.storage.store import MetricsLog, RunState, StepFiles, records_table

# Sampling-seed steps of the held-out evaluations and the sync probe, apart from every training step's.
EVAL_SEED_STEP, PROBE_SEED_STEP = 1_000_000, 2_000_000


def train(cfg: RunConfig, checkpoint: str, pool: list, held_out: list, log=print) -> dict:
    """Run GRPO from ``checkpoint`` on the ``pool`` scenarios; resume from ``cfg.out`` if it holds a checkpoint.

    Returns the before/after held-out metrics. Writes ``rollouts/`` (Parquet), ``metrics.jsonl``, TensorBoard
    events, ``checkpoints/`` and the final HF policy in ``policy/``.
    """
    cfg.preflight(need_data=False)  # the scenarios come as arguments
    out, tr, group = Path(cfg.out), cfg.trainer, cfg.rollout.group_size
    by_id = {s.scenario_id: s for s in [*pool, *held_out]}
    ckpt_dir = out / "checkpoints"
    with redis_server(cfg.redis_url) as redis_url, Cluster(cfg, checkpoint, redis_url) as cluster:
        state = RunState(redis_url, cfg.name)
        state.update(status="starting", roles=cluster.where(), actor_env=cluster.environments())
        start = cluster.load(str(ckpt_dir))["next_step"] if (ckpt_dir / "latest").exists() else 0
        rollouts, metrics = StepFiles(out / "rollouts"), MetricsLog(out, start)
        rollouts.truncate_from(start)
        tokens = PolicyTokenizer.load(checkpoint)
        probe = probe_sequence(cluster, pool[:1])
        summary = json.loads((out / "summary.json").read_text()) if start else {}
        if start:
            log(f"resuming at step {start} from {ckpt_dir}")
            cluster.sync(probe)
        else:
            summary["before"] = evaluate(cluster, held_out, by_id, cfg, -1)
            metrics.log(-1, summary["before"])
            log("held-out before GRPO: " + _fmt(summary["before"]))
        selection = Selection(cluster, cfg, pool, start)
        pending = launch(cluster, selection, start, cfg, by_id)
        gen_tokens = 0
        bar = tqdm(range(start, tr.steps), desc="grpo", initial=start, total=tr.steps, dynamic_ncols=True)
        for step in bar:
            t0 = time.perf_counter()
            records = cluster.collect(pending)                                                   # generate
            t_gen = time.perf_counter()
            if tr.staleness and step + 1 < tr.steps:                                            # overlap next
                pending = launch(cluster, selection, step + 1, cfg, by_id)
            cluster.score(records, by_id)                                                        # score
            check_error_budget([r.rewards for r in records], cfg.rewards.components, f"step {step}")
            selection.observe(records)                                                           # amortise
            t_score = time.perf_counter()
            adv_stats = assign_advantages(records, group, cfg.learner.advantage)                # advantages
            oldest = check_staleness(records, step, tr.staleness)
            learn = cluster.update(records, tokens.id(PAD), expert_inputs(records, by_id, tokens)  # update
                                   if cfg.learner.expert == "flow" else None)
            t_learn = time.perf_counter()
            sync = cluster.sync(probe)                                                           # sync
            t_sync = time.perf_counter()
            if step + 1 < tr.steps:                                                              # re-curate
                selection.maybe_start_round(step + 1)
            curation = selection.poll()
            if not tr.staleness and step + 1 < tr.steps:
                pending = launch(cluster, selection, step + 1, cfg, by_id)
            rollouts.write(step, records_table(records))                                         # log
            gen_tokens += sum(len(r.prompt_ids) + len(r.completion_ids) for r in records)
            curation_tokens = selection.cost[M.CURATION_TOKENS]
            recuration = selection.cost[M.CURATION_RECURATION_TOKENS]
            scalars = {**reward_means(records, by_id), **learn, **sync, **adv_stats, **selection.cost, **curation,
                       M.STEP_S: t_sync - t0, M.GENERATE_WAIT_S: t_gen - t0, M.SCORE_S: t_score - t_gen,
                       M.LEARN_S: t_learn - t_score, M.SYNC_S: t_sync - t_learn, M.STALENESS_MAX: oldest,
                       **{M.restarts_of(role): n for role, n in cluster.restarts.items()},
                       M.CURATION_ROUND_USED: records[0].curation_round,
                       M.CURATION_TOKEN_SHARE: curation_tokens / max(curation_tokens + gen_tokens, 1),
                       M.CURATION_RECURATION_SHARE: recuration / max(recuration + gen_tokens, 1),
                       M.TRAIN_TOKENS: gen_tokens}
            if tr.eval_every and (step + 1) % tr.eval_every == 0 and step + 1 < tr.steps:
                scalars.update(evaluate(cluster, held_out, by_id, cfg, step))
            metrics.log(step, scalars)
            state.update(step=step, version=sync[M.SYNC_VERSION], status="running", step_s=scalars[M.STEP_S],
                         curation_round=records[0].curation_round, **cluster.live(step, scalars))
            bar.set_postfix_str(_progress(scalars))
            if (step + 1) % tr.checkpoint_every == 0 or step + 1 == tr.steps:                   # checkpoint
                cluster.save(str(ckpt_dir), {"next_step": step + 1})
                drop_old_checkpoints(ckpt_dir)
                (out / "summary.json").write_text(json.dumps(summary, indent=1))
        summary["after"] = evaluate(cluster, held_out, by_id, cfg, tr.steps)
        metrics.log(tr.steps, summary["after"])
        log("held-out after GRPO:  " + _fmt(summary["after"]))
        cluster.save_pretrained(str(out / "policy"))
        summary["reward_status_counts"] = cluster.rewards.status_counts()
        state.update(step=tr.steps, status="finished")
        metrics.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def launch(cluster: Cluster, selection: Selection, step: int, cfg: RunConfig, by_id: dict):
    """Start generating the rollouts of ``step`` from the current selection; returns what ``collect`` takes."""
    round_id, scenarios = selection.batch(step, cfg.trainer.scenarios_per_step, cfg.trainer.seed, by_id)
    return cluster.generate(scenarios, step, curation_round=round_id)


def evaluate(cluster: Cluster, held_out: list, by_id: dict, cfg: RunConfig, step: int) -> dict:
    """Held-out rewards of the current policy: ``eval_samples`` samples per scenario, scored like training."""
    records = cluster.collect(cluster.generate(held_out, EVAL_SEED_STEP + step, group_size=cfg.trainer.eval_samples))
    cluster.score(records, by_id)
    check_error_budget([r.rewards for r in records], cfg.rewards.components, f"held-out evaluation {step}")
    return {M.held_out(k): v for k, v in reward_means(records, by_id).items()}


def probe_sequence(cluster: Cluster, scenarios: list) -> list[int]:
    """A fixed real sequence (prompt + a sampled completion) whose log-probs verify each weight sync."""
    record = cluster.collect(cluster.generate(scenarios, PROBE_SEED_STEP, group_size=1))[0]
    return record.prompt_ids + record.completion_ids


@contextmanager
def redis_server(url: str | None):
    """The configured Redis, or a local server for the run's lifetime."""
    if url:
        yield url
    else:
        with LocalRedisServer() as server:
            yield server.url


def drop_old_checkpoints(ckpt_dir: Path) -> None:
    """Keep only the checkpoint DeepSpeed's ``latest`` file names."""
    keep = (ckpt_dir / "latest").read_text().strip()
    for old in ckpt_dir.glob("global_step*"):
        if old.name != keep:
            shutil.rmtree(old)


def _progress(s: dict) -> str:
    return (f"reward {s[M.REWARD]:.3f} step {s[M.STEP_S]:.1f}s (gen {s[M.GENERATE_WAIT_S]:.1f} "
            f"score {s[M.SCORE_S]:.1f} learn {s[M.LEARN_S]:.1f} sync {s[M.SYNC_S]:.2f}) "
            f"gap {s[M.SAMPLER_LOGP_GAP]:.1e}")


def _fmt(metrics: dict) -> str:
    return " ".join(f"{k.split('/', 1)[-1]}={v:.3f}" for k, v in metrics.items())
