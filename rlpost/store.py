"""Where a run keeps things: Parquet (every rollout, per-step metrics) and Redis (the live run state).

Parquet files are written one per step and renamed into place, so a crash never leaves a half-written file
and a resumed run drops exactly the steps after its checkpoint (``truncate_from``).
Redis keys of a run share the prefix ``rlpost:{run}:`` so two runs on one server never collide.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from rlpost.rollout import RolloutRecord


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class StepFiles:
    """A folder of ``step=NNNNNN.parquet`` files, one per training step."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, step: int) -> Path:
        return self.dir / f"step={step:06d}.parquet"

    def write(self, step: int, table: pa.Table) -> Path:
        target = self.path(step)
        tmp = target.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, target)
        return target

    def steps(self) -> list[int]:
        return sorted(int(p.stem.split("=")[1]) for p in self.dir.glob("step=*.parquet"))

    def truncate_from(self, step: int) -> int:
        """Delete the files of ``step`` and later; returns how many went."""
        gone = [p for p in self.dir.glob("step=*.parquet") if int(p.stem.split("=")[1]) >= step]
        for p in gone:
            p.unlink()
        return len(gone)

    def read(self) -> pa.Table:
        files = [self.path(s) for s in self.steps()]
        if not files:
            return pa.table({})
        return pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")


def records_table(records: list[RolloutRecord]) -> pa.Table:
    """Rollout records as an Arrow table: one row per sample; reward components flattened to
    ``reward.<name>.{value,status,latency_ms,version}`` plus ``reward.<name>.info`` (JSON)."""
    rows = []
    for r in records:
        row = r.as_row()
        rewards = row.pop("rewards")
        for name, comp in rewards.items():
            for key in ("value", "status", "latency_ms", "version"):
                row[f"reward.{name}.{key}"] = comp.get(key)
            row[f"reward.{name}.info"] = json.dumps(comp.get("info", {}), default=str)
        rows.append(row)
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


class RunState:
    """The run's live state in Redis under ``rlpost:{run}:``: step, policy version, status, heartbeat."""

    def __init__(self, url: str, run: str):
        self.prefix = f"rlpost:{run}:"
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                           retry_on_timeout=True, health_check_interval=10)
        self.client.ping()
        self.client.sadd("rlpost:runs", run)

    def key(self, name: str) -> str:
        return self.prefix + name

    def update(self, **fields) -> None:
        self.client.hset(self.key("state"), mapping={k: json.dumps(v) for k, v in {**fields, "heartbeat": time.time()}.items()})

    def get(self) -> dict:
        return {k.decode(): json.loads(v) for k, v in self.client.hgetall(self.key("state")).items()}
