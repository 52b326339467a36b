"""Where a run keeps things: Parquet (every rollout, per-step metrics) and Redis (the live run state).

Parquet files are written one per step and renamed into place, so a crash never leaves a half-written file
and a resumed run drops exactly the steps after its checkpoint (``truncate_from``).
Redis keys of a run share the prefix ``rlpost:{run}:`` so two runs on one server never collide.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from rlpost.curation.rounds import CurationRound
from rlpost.rewards.compose import flatten_components
from rlpost.rl.rollout import RolloutRecord


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class StepFiles:
    """A folder of ``<key>=NNNNNN.parquet`` files, one per training step (or curation round)."""

    def __init__(self, directory: str | Path, key: str = "step"):
        self.dir = Path(directory)
        self.key = key
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, step: int) -> Path:
        return self.dir / f"{self.key}={step:06d}.parquet"

    def write(self, step: int, table: pa.Table) -> Path:
        target = self.path(step)
        tmp = target.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, target)
        return target

    def steps(self) -> list[int]:
        return sorted(int(p.stem.split("=")[1]) for p in self.dir.glob(f"{self.key}=*.parquet"))

    def truncate_from(self, step: int) -> int:
        """Delete the files of ``step`` and later; returns how many went."""
        gone = [p for p in self.dir.glob(f"{self.key}=*.parquet") if int(p.stem.split("=")[1]) >= step]
        for p in gone:
            p.unlink()
        return len(gone)

    def read(self) -> pa.Table:
        files = [self.path(s) for s in self.steps()]
        if not files:
            return pa.table({})
        return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def records_table(records: list[RolloutRecord]) -> pa.Table:
    """Rollout records as an Arrow table: one row per sample, trajectories as flat float32 lists, and the typed
    reward components flattened by ``flatten_components`` (the only place they become columns)."""
    rows = []
    for r in records:
        row = {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "rewards"}
        row["record_id"] = r.record_id
        for key in ("controls", "waypoints"):
            row[key] = None if row[key] is None else np.asarray(row[key], dtype=np.float32).ravel().tolist()
        rows.append(row | flatten_components(r.rewards))
    return pa.Table.from_pylist(rows)


class MetricsLog:
    """Per-step scalars: a JSON-lines file (the source of the report) and TensorBoard event files."""

    def __init__(self, directory: str | Path, start_step: int = 0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file = self.dir / "metrics.jsonl"
        kept = [row for row in self.rows() if row.get("step", -1) < start_step]
        self.file.write_text("".join(json.dumps(row) + "\n" for row in kept))
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=start_step)

    def rows(self) -> list[dict]:
        if not self.file.exists():
            return []
        return [json.loads(line) for line in self.file.read_text().splitlines() if line.strip()]

    def log(self, step: int, scalars: dict) -> None:
        row = {"step": step, **{k: _jsonable(v) for k, v in scalars.items()}}
        with self.file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in scalars.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.tb.add_scalar(key, value, step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


def with_retries(call, what: str, attempts: int = 8, first_wait_s: float = 0.25):
    """Run ``call()``; on a lost Redis connection retry with exponential backoff (≈ 30 s in all), then raise a
    ConnectionError naming ``what``. A restarted server is reached again transparently (redis-py reconnects)."""
    for attempt in range(attempts):
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if attempt == attempts - 1:
                raise redis.ConnectionError(f"{what}: Redis unreachable after {attempts} attempts: {exc}") from None
            time.sleep(first_wait_s * 2**attempt)
    return None


class RunState:
    """The run's live state in Redis under ``rlpost:{run}:``: step, policy version, status, heartbeat."""

    def __init__(self, url: str, run: str):
        self.prefix = f"rlpost:{run}:"
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                           retry_on_timeout=True, health_check_interval=10)
        with_retries(self.client.ping, f"run state of {self.prefix}")
        with_retries(lambda: self.client.sadd("rlpost:runs", run), "run registry")

    def key(self, name: str) -> str:
        return self.prefix + name

    def update(self, **fields) -> None:
        mapping = {k: json.dumps(v) for k, v in {**fields, "heartbeat": time.time()}.items()}
        with_retries(lambda: self.client.hset(self.key("state"), mapping=mapping), f"run state of {self.prefix}")

    def get(self) -> dict:
        return {k.decode(): json.loads(v) for k, v in self.client.hgetall(self.key("state")).items()}


def read_run_state(url: str, run: str) -> dict:
    """The live state of ``run`` (what ``RunState.update`` wrote), read without registering anything; raises
    ``LookupError`` naming the runs the server knows when it holds none for ``run``."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    state = {k.decode(): json.loads(v) for k, v in client.hgetall(f"rlpost:{run}:state").items()}
    if not state:
        known = sorted(m.decode() for m in client.smembers("rlpost:runs"))
        raise LookupError(f"no run {run!r} in the Redis at {url}; runs there: {known or 'none'}")
    return state


class SelectionStore:
    """The curated selection: Redis sorted set ``rlpost:{run}:selection`` (member = scenario id, score = its
    disagreement score), swapped atomically per round; every round also kept as ``curation/round=NNNNNN.parquet``.

    Parquet is written first, so a selection Redis lost (restart, eviction) is rebuilt from the newest round.
    """

    def __init__(self, url: str, run: str, rounds_dir: str | Path):
        self.run = run
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, retry_on_timeout=True)
        self.key = f"rlpost:{run}:selection"
        self.rounds = StepFiles(rounds_dir, key="round")

    def publish(self, done: CurationRound) -> None:
        """Persist a round (see ``round_table``) and make its selection the live one."""
        self.rounds.write(done.round, round_table(done))
        s = done.scores
        with_retries(lambda: self._to_redis(done.round, s.selected, dict(zip(s.candidates, s.scores)),
                                            done.policy_version), f"selection of {self.run}")

    def _to_redis(self, round_id: int, selected: list[str], scores: dict, version: int) -> None:
        tmp = f"{self.key}:tmp"
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(tmp)
        pipe.zadd(tmp, {sid: float(scores.get(sid, 0.0)) for sid in selected})
        pipe.rename(tmp, self.key)  # atomic swap: readers see the old or the new selection, never a mix
        pipe.hset(f"{self.key}:meta", mapping={"round": round_id, "policy_version": version})
        pipe.execute()

    def current(self) -> tuple[int, list[str]]:
        """(round id, selected ids) of the live selection; rebuilt from Parquet when Redis lost it."""
        meta = with_retries(lambda: self.client.hgetall(f"{self.key}:meta"), f"selection of {self.run}")
        ids = sorted(m.decode() for m in with_retries(lambda: self.client.zrange(self.key, 0, -1), "selection"))
        if meta and ids:
            return int(meta[b"round"]), ids
        rounds = self.rounds.steps()
        if not rounds:
            raise LookupError(f"no curation round published for run {self.run!r} (Redis and {self.rounds.dir} empty)")
        table = pq.read_table(self.rounds.path(rounds[-1])).to_pylist()
        selected = [r["scenario_id"] for r in table if r["selected"]]
        with_retries(lambda: self._to_redis(rounds[-1], selected, {r["scenario_id"]: r["score"] for r in table},
                                            table[0]["policy_version"]), f"selection of {self.run}")
        return rounds[-1], sorted(selected)

    def truncate_from(self, round_id: int) -> None:
        """Forget rounds ``round_id`` and later (a resumed run redoes them); the live selection is rebuilt from
        the newest remaining round on the next ``current()``."""
        self.rounds.truncate_from(round_id)
        with_retries(lambda: self.client.delete(self.key, f"{self.key}:meta"), f"selection of {self.run}")

    def save_scores(self, table_json: str) -> None:
        """Keep the amortised score table (``ScoreTable.to_json``) where a restarted curator finds it."""
        with_retries(lambda: self.client.set(f"rlpost:{self.run}:scores", table_json), f"scores of {self.run}")

    def load_scores(self) -> bytes | None:
        return with_retries(lambda: self.client.get(f"rlpost:{self.run}:scores"), f"scores of {self.run}")


def round_table(done: CurationRound) -> pa.Table:
    """A curation round as rows, one per candidate, with the round's scalars repeated."""
    s = done.scores
    selected = set(s.selected)
    n = len(s.candidates)
    return pa.table({
        "round": [done.round] * n,
        "step": [done.step] * n,
        "policy_version": [done.policy_version] * n,
        "scenario_id": s.candidates,
        "score": s.scores,
        "score_step": s.score_steps or [done.step] * n,
        "score_source": s.sources or ["round"] * n,
        "selected": [c in selected for c in s.candidates],
        "zero_variance": s.zero_variance,
        "p_model_entropy": s.p_model_entropy,
        "wall_s": [done.wall_s] * n,
        "tokens": [done.tokens] * n,
        "flops": [done.flops] * n,
    })
