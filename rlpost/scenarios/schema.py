"""The ``Scenario`` record (the data contract other components read) and its Arrow / Parquet schema.

Units: metres, seconds, radians, m/s. Every spatial array is in the **ego frame at t0**: the ego's box centre at
the origin, heading along +x, left = +y. Time steps are 0.1 s apart; the history holds t = −1.9 … 0 s (t0
included), the future t = 0.1 … 6.4 s; agent tracks cover both (84 steps, index 19 = t0).

Arrow schema (one row per scenario; ``N`` agents, ``P`` polyline points vary per row)::

    scenario_id string · source string (network) · seed int64 · t0 float64 [s, simulation time]
    split string ("train"/"val") · keyframe string ("reactive"/"grid")
    history fixed_size_list<float64, 80> (20 × (x, y, yaw, v)) · future fixed_size_list<float64, 256> (64 × 4)
    expert_controls fixed_size_list<float64, 128> (64 × (a [m/s²], κ [1/m]))
    ego_length float64 · ego_width float64 [m]
    agent_states list<fixed_size_list<float64, 336>> (N × 84 × (x, y, yaw, v)) · agent_size list<fixed_size_list<
    float64, 2>> (length, width) · agent_type list<string> · agent_ids list<string>
    agent_valid list<fixed_size_list<bool, 84>>
    lanes list<struct<lane_id string, polyline list<fixed_size_list<float64, 2>>>> · ego_lane_id string
    tl_state string ("red"/"yellow"/"green"/"none") · tl_distance float64 [m] (NaN when there is no signal)
    decision_longitudinal string? · decision_lateral string? · decision_direction string?
    factors list<struct<category string, text string, observed_at float64 [s, ≤ 0], key string>>
    meta_longitudinal list<string> · meta_lateral list<string> · coc_trace string
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlpost.common.errors import MissingPathError

HIST, FUT = 20, 64
SPAN = HIST + FUT
VAL_FRACTION = 0.1


@dataclass
class Scenario:
    """One labelled ego window. Shapes: history ``(20, 4)``, future ``(64, 4)``, expert_controls ``(64, 2)``,
    agent_states ``(N, 84, 4)``, agent_size ``(N, 2)``, agent_valid ``(N, 84)`` bool; lanes: (id, ``(P, 2)``).

    decision: longitudinal / lateral / direction values of :mod:`rlpost.domain.coc` (strings) or None.
    factors: (category, text, observed_at [s]); factor_keys: the labeller's key per factor (validator evidence).
    """

    scenario_id: str
    source: str
    seed: int
    t0: float
    split: str
    history: np.ndarray
    future: np.ndarray
    expert_controls: np.ndarray
    ego_length: float
    ego_width: float
    agent_states: np.ndarray
    agent_size: np.ndarray
    agent_type: list[str]
    agent_valid: np.ndarray
    lanes: list[tuple[str, np.ndarray]]
    ego_lane_id: str
    tl_state: str
    tl_distance: float
    decision_longitudinal: str | None
    decision_lateral: str | None
    decision_direction: str | None
    factors: list[tuple[str, str, float]]
    meta_longitudinal: tuple[str, ...]
    meta_lateral: tuple[str, ...]
    coc_trace: str
    keyframe: str = "grid"
    agent_ids: list[str] = field(default_factory=list)
    factor_keys: list[str] = field(default_factory=list)

    @property
    def decision(self) -> tuple[str | None, str | None, str | None]:
        """(longitudinal, lateral, direction)."""
        return self.decision_longitudinal, self.decision_lateral, self.decision_direction

    @property
    def decision_key(self) -> str:
        """"longitudinal/lateral[_direction]", the stratification and histogram key."""
        lat = self.decision_lateral or "none"
        if self.decision_direction:
            lat += f"_{self.decision_direction}"
        return f"{self.decision_longitudinal or 'none'}/{lat}"


def split_of(scenario_id: str) -> str:
    """Deterministic train/val assignment from the id alone (stable across builds and machines)."""
    return "val" if zlib.crc32(scenario_id.encode()) % 1000 < VAL_FRACTION * 1000 else "train"


def arrow_schema():
    """The ``pyarrow.Schema`` of a scenario table (see the module docstring)."""
    import pyarrow as pa

    f64, s = pa.float64(), pa.string()
    return pa.schema([
        ("scenario_id", s), ("source", s), ("seed", pa.int64()), ("t0", f64), ("split", s), ("keyframe", s),
        ("history", pa.list_(f64, HIST * 4)), ("future", pa.list_(f64, FUT * 4)),
        ("expert_controls", pa.list_(f64, FUT * 2)), ("ego_length", f64), ("ego_width", f64),
        ("agent_states", pa.list_(pa.list_(f64, SPAN * 4))), ("agent_size", pa.list_(pa.list_(f64, 2))),
        ("agent_type", pa.list_(s)), ("agent_ids", pa.list_(s)), ("agent_valid", pa.list_(pa.list_(pa.bool_(), SPAN))),
        ("lanes", pa.list_(pa.struct([("lane_id", s), ("polyline", pa.list_(pa.list_(f64, 2)))]))),
        ("ego_lane_id", s), ("tl_state", s), ("tl_distance", f64),
        ("decision_longitudinal", s), ("decision_lateral", s), ("decision_direction", s),
        ("factors", pa.list_(pa.struct([("category", s), ("text", s), ("observed_at", f64), ("key", s)]))),
        ("meta_longitudinal", pa.list_(s)), ("meta_lateral", pa.list_(s)), ("coc_trace", s),
    ])


def _row(sc: Scenario) -> dict:
    keys = sc.factor_keys or [""] * len(sc.factors)
    return {
        "scenario_id": sc.scenario_id, "source": sc.source, "seed": int(sc.seed), "t0": float(sc.t0),
        "split": sc.split, "keyframe": sc.keyframe,
        "history": np.asarray(sc.history, np.float64).reshape(-1), "future": np.asarray(sc.future).reshape(-1),
        "expert_controls": np.asarray(sc.expert_controls, np.float64).reshape(-1),
        "ego_length": float(sc.ego_length), "ego_width": float(sc.ego_width),
        "agent_states": list(np.asarray(sc.agent_states, np.float64).reshape(len(sc.agent_type), SPAN * 4)),
        "agent_size": list(np.asarray(sc.agent_size, np.float64).reshape(-1, 2)),
        "agent_type": list(sc.agent_type), "agent_ids": list(sc.agent_ids),
        "agent_valid": list(np.asarray(sc.agent_valid, bool).reshape(len(sc.agent_type), SPAN)),
        "lanes": [{"lane_id": lid, "polyline": list(np.asarray(p, np.float64))} for lid, p in sc.lanes],
        "ego_lane_id": sc.ego_lane_id, "tl_state": sc.tl_state, "tl_distance": float(sc.tl_distance),
        "decision_longitudinal": sc.decision_longitudinal, "decision_lateral": sc.decision_lateral,
        "decision_direction": sc.decision_direction,
        "factors": [{"category": c, "text": t, "observed_at": float(o), "key": k}
                    for (c, t, o), k in zip(sc.factors, keys)],
        "meta_longitudinal": list(sc.meta_longitudinal), "meta_lateral": list(sc.meta_lateral),
        "coc_trace": sc.coc_trace,
    }


def write_scenarios(path, scenarios: list[Scenario]) -> Path:
    """Write ``scenarios`` as one Parquet file ``path`` (a directory gets ``scenarios.parquet``); returns the file.

    Raises ValueError for an empty list and a clear OSError naming the path when it cannot be written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not scenarios:
        raise ValueError("write_scenarios: no scenarios to write (the list is empty)")
    path = Path(path)
    target = path / "scenarios.parquet" if path.suffix != ".parquet" else path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create the output folder {target.parent}: {exc.strerror or exc}") from exc
    table = pa.Table.from_pylist([_row(sc) for sc in scenarios], schema=arrow_schema())
    try:
        pq.write_table(table, target, compression="zstd")
    except OSError as exc:
        raise OSError(f"cannot write the scenario file {target}: {exc}") from exc
    return target


def _resolve_file(path) -> Path:
    path = Path(path)
    target = path / "scenarios.parquet" if path.is_dir() else path
    if not target.exists():
        raise MissingPathError(f"no scenario file at {target} (build one with `rlpost data build --out {path}`)")
    return target


def read_scenarios(path, split: str | None = None) -> list[Scenario]:
    """Read scenarios from a Parquet file or a folder holding ``scenarios.parquet``.

    split: "train" / "val" to keep one split, None for all. Arrays come back as float64 / bool numpy arrays with
    the shapes documented on :class:`Scenario`.
    """
    import pyarrow.parquet as pq

    if split not in (None, "train", "val"):
        raise ValueError(f"split: expected 'train', 'val' or None, got {split!r}")
    file = _resolve_file(path)
    try:
        table = pq.read_table(file)
        missing = sorted(set(arrow_schema().names) - set(table.column_names))
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError; truncated files an OSError
        raise ValueError(f"scenarios {file}: not a readable Parquet scenario file ({exc}); rebuild it with "
                         f"`rlpost data build`") from None
    if missing:
        raise ValueError(f"scenarios {file}: columns {missing} are missing; the file was written by another "
                         f"schema version, rebuild it with `rlpost data build`")
    if split is not None:
        import pyarrow.compute as pc

        table = table.filter(pc.equal(table["split"], split))
    out = []
    for r in table.to_pylist():
        n = len(r["agent_type"])
        out.append(Scenario(
            scenario_id=r["scenario_id"], source=r["source"], seed=r["seed"], t0=r["t0"], split=r["split"],
            history=np.asarray(r["history"]).reshape(HIST, 4), future=np.asarray(r["future"]).reshape(FUT, 4),
            expert_controls=np.asarray(r["expert_controls"]).reshape(FUT, 2),
            ego_length=r["ego_length"], ego_width=r["ego_width"],
            agent_states=np.asarray(r["agent_states"], dtype=np.float64).reshape(n, SPAN, 4),
            agent_size=np.asarray(r["agent_size"], dtype=np.float64).reshape(n, 2),
            agent_type=list(r["agent_type"]), agent_valid=np.asarray(r["agent_valid"], dtype=bool).reshape(n, SPAN),
            lanes=[(ln["lane_id"], np.asarray(ln["polyline"], dtype=np.float64).reshape(-1, 2)) for ln in r["lanes"]],
            ego_lane_id=r["ego_lane_id"], tl_state=r["tl_state"],
            tl_distance=math.nan if r["tl_distance"] is None else r["tl_distance"],
            decision_longitudinal=r["decision_longitudinal"], decision_lateral=r["decision_lateral"],
            decision_direction=r["decision_direction"],
            factors=[(f["category"], f["text"], f["observed_at"]) for f in r["factors"]],
            meta_longitudinal=tuple(r["meta_longitudinal"]), meta_lateral=tuple(r["meta_lateral"]),
            coc_trace=r["coc_trace"], keyframe=r["keyframe"], agent_ids=list(r["agent_ids"]),
            factor_keys=[f["key"] for f in r["factors"]],
        ))
    return out
