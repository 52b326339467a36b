"""Run a shipped SUMO network headless at 0.1 s and record every road user, signal and lane.

The output is a :class:`Recording`: per-actor tracks in world coordinates, already converted from SUMO's conventions
to the project's (docs/design.md §9):

- SUMO reports the **front bumper**; tracks hold the box **centre**: centre = front − L/2·(cos yaw, sin yaw).
- SUMO's angle is navigation style (0 = north, clockwise, degrees); tracks hold yaw = π/2 − radians(angle),
  counter-clockwise from +x, unwrapped along each track.
- SUMO's heading jumps at the corners of lane shapes (piecewise-linear lanes) and its speed is piecewise linear
  with per-step acceleration jumps (dawdling). Both break the comfort bounds although no real car does that, so
  yaw and speed are smoothed along each track with a Gaussian of ``SMOOTH_SIGMA`` before the centre is computed
  ("fix at the source", docs/design.md §9); positions keep SUMO's front-bumper path, which is continuous.

libsumo (in-process) is used when installed, else TraCI over a socket (about 3× slower, same results).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlpost.scenarios.nets import STEP_LENGTH, resolve_net, sumo_command, sumo_home

SMOOTH_SIGMA = 0.3  # s: Gaussian smoothing of yaw and speed along a track (see module docstring)

# SUMO vehicle classes -> the project's agent types.
_KIND = {
    "passenger": "vehicle", "private": "vehicle", "taxi": "vehicle", "evehicle": "vehicle", "delivery": "vehicle",
    "emergency": "vehicle", "authority": "vehicle", "army": "vehicle", "vip": "vehicle", "custom1": "vehicle",
    "bicycle": "bicycle", "truck": "truck", "trailer": "truck", "bus": "bus", "coach": "bus", "tram": "bus",
    "motorcycle": "motorcycle", "moped": "motorcycle", "pedestrian": "pedestrian",
}
EGO_CLASSES = frozenset({"passenger", "private", "taxi", "evehicle"})
_CROSSING = re.compile(r"^:.+_c\d+_\d+$")
_WALKINGAREA = re.compile(r"^:.+_w\d+_\d+$")


def _traci():
    """libsumo if installed (in-process, fast), else the TraCI client; and whether it is libsumo."""
    try:
        import libsumo

        return libsumo, True
    except ImportError:
        import traci

        return traci, False


@dataclass
class Track:
    """One road user over the steps it was in the simulation (world frame, centre-referenced).

    start: index of its first step in the recording. xy ``(L, 2)`` centre [m]; yaw ``(L,)`` [rad] (unwrapped);
    v ``(L,)`` speed [m/s]; lane ``(L,)`` int32 index into ``Recording.lane_ids`` (−1 off-lane);
    lane_pos ``(L,)`` distance of the front bumper along that lane [m]; lat ``(L,)`` lateral offset of the centre
    from the lane centre line [m] (left positive). kind: "vehicle", "truck", "bus", "bicycle", "motorcycle",
    "pedestrian". vclass: SUMO's vehicle class. injected: "" or the injection event kind that created it.
    """

    actor_id: str
    kind: str
    vclass: str
    length: float
    width: float
    start: int
    xy: np.ndarray
    yaw: np.ndarray
    v: np.ndarray
    lane: np.ndarray
    lane_pos: np.ndarray
    lat: np.ndarray
    injected: str = ""

    @property
    def end(self) -> int:
        """One past the index of its last recorded step."""
        return self.start + len(self.v)


@dataclass
class LaneInfo:
    """Static geometry and topology of one SUMO lane.

    shape ``(P, 2)`` centre line [m]; length [m]; width [m]; speed limit [m/s]; edge id; index in its edge
    (0 = rightmost); function: "normal", "internal", "crossing" or "walkingarea"; cars: whether passenger cars may
    use it; pedestrians: whether people may walk on it; links: ``(to_lane, via_lane, has_priority, direction)`` per
    outgoing connection, direction in SUMO's letters (s straight, l/r left/right, L/R partly left/right,
    t turnaround).
    """

    shape: np.ndarray
    length: float
    width: float
    speed: float
    edge: str
    index: int
    function: str
    cars: bool
    links: list = field(default_factory=list)
    pedestrians: bool = False


@dataclass
class Recording:
    """Everything a SUMO run produced that windows and labels need.

    t_begin: simulation time of step 0 [s]; n_steps steps ``dt`` apart. lanes: lane id -> :class:`LaneInfo`;
    lane_ids: the code table of ``Track.lane``. tls_states: tls id -> ``(n_steps,)`` list of SUMO state strings
    (one char per link: r/y/G/g/o/s/u); tls_links: ``(in_lane, via_lane) -> (tls id, link index)``.
    events: injected events, dicts with "kind", "actor", "step" and event-specific fields.
    """

    net: str
    seed: int
    dt: float
    t_begin: float
    n_steps: int
    tracks: list[Track]
    lanes: dict[str, LaneInfo]
    lane_ids: list[str]
    tls_states: dict[str, list[str]]
    tls_links: dict[tuple[str, str], tuple[str, int]]
    events: list[dict] = field(default_factory=list)
    sim_seconds: float = 0.0  # wall time of the simulation itself


def _gauss_smooth(x: np.ndarray, sigma_steps: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge padding (the ends keep their values, no shrinkage)."""
    if len(x) < 3 or sigma_steps <= 0:
        return x.copy()
    half = int(np.ceil(3 * sigma_steps))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_steps) ** 2)
    k /= k.sum()
    padded = np.pad(x, (half, half), mode="edge")
    return np.convolve(padded, k, mode="valid")


def finish_track(actor_id, kind, vclass, length, width, start, rows, injected="", dt=STEP_LENGTH) -> Track:
    """Convert raw SUMO samples to a :class:`Track` (front → centre, angle → yaw, smoothing).

    rows: list of (x_front [m], y_front [m], angle [deg, nav. style], speed [m/s], lane code, lane_pos [m],
    lat [m]) per step.
    """
    raw = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    yaw = np.unwrap(np.pi / 2 - np.radians(raw[:, 2]))
    sigma = SMOOTH_SIGMA / dt
    yaw = _gauss_smooth(yaw, sigma)
    v = np.maximum(_gauss_smooth(raw[:, 3], sigma), 0.0)
    front = raw[:, :2]
    centre = front - 0.5 * length * np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
    return Track(
        actor_id, kind, vclass, float(length), float(width), int(start), centre, yaw, v,
        raw[:, 4].astype(np.int32), raw[:, 5], raw[:, 6], injected,
    )


def _lane_function(lane_id: str) -> str:
    if _CROSSING.match(lane_id):
        return "crossing"
    if _WALKINGAREA.match(lane_id):
        return "walkingarea"
    return "internal" if lane_id.startswith(":") else "normal"


def _read_lanes(tc_mod) -> dict[str, LaneInfo]:
    lanes = {}
    for lid in tc_mod.lane.getIDList():
        allowed = tc_mod.lane.getAllowed(lid)
        disallowed = tc_mod.lane.getDisallowed(lid)
        cars = ("passenger" in allowed) if allowed else ("passenger" not in disallowed)
        peds = ("pedestrian" in allowed) if allowed else ("pedestrian" not in disallowed)
        links = [(lk[0], lk[4], bool(lk[1]), lk[6]) for lk in tc_mod.lane.getLinks(lid)]
        lanes[lid] = LaneInfo(
            np.asarray(tc_mod.lane.getShape(lid), dtype=np.float64), tc_mod.lane.getLength(lid),
            tc_mod.lane.getWidth(lid), tc_mod.lane.getMaxSpeed(lid), tc_mod.lane.getEdgeID(lid),
            int(lid.rsplit("_", 1)[1]), _lane_function(lid), cars, links, peds,
        )
    return lanes


def simulate(net: str, seed: int, duration: float, inject: bool = True, progress=None) -> Recording:
    """Simulate ``net`` for ``duration`` seconds after its warm-up and record it at 0.1 s.

    net: a name from :data:`rlpost.scenarios.nets.NETS`. seed: SUMO's and the injection layer's seed.
    duration: recorded seconds (> 0). inject: add the project's events (parked vehicles partly in a lane,
    pedestrians crossing, cut-ins; see :mod:`rlpost.scenarios.inject`). progress: optional callable(steps_done).
    """
    import time

    from rlpost.scenarios.inject import Injector

    spec = resolve_net(net)
    if not duration > 0:
        raise ValueError(f"duration: must be > 0 s, got {duration!r}")
    sim, is_lib = _traci()
    import traci.constants as tc

    veh_vars = [tc.VAR_POSITION, tc.VAR_ANGLE, tc.VAR_SPEED, tc.VAR_LANE_ID, tc.VAR_LANEPOSITION,
                tc.VAR_LANEPOSITION_LAT]
    per_vars = [tc.VAR_POSITION, tc.VAR_ANGLE, tc.VAR_SPEED, tc.VAR_LANE_ID, tc.VAR_LANEPOSITION]
    with tempfile.TemporaryDirectory(prefix=f"rlpost-{net}-") as tmp:
        cmd = sumo_command(spec, seed, duration, Path(tmp))
        if not is_lib:
            cmd[0] = str(sumo_home() / "bin" / "sumo")
        started = time.perf_counter()
        sim.start(cmd)
        try:
            warm_steps = int(round(spec.warmup / STEP_LENGTH))
            for _ in range(warm_steps):
                sim.simulationStep()
            lanes = _read_lanes(sim)
            lane_ids = sorted(lanes)
            code = {lid: i for i, lid in enumerate(lane_ids)}
            tls_ids = list(sim.trafficlight.getIDList())
            tls_links = {}
            for tls in tls_ids:
                for idx, group in enumerate(sim.trafficlight.getControlledLinks(tls)):
                    for in_lane, _out, via in group:
                        tls_links[(in_lane, via)] = (tls, idx)
            tls_states = {tls: [] for tls in tls_ids}
            injector = Injector(sim, spec, lanes, seed) if inject else None
            rows: dict[str, list] = {}
            first: dict[str, int] = {}
            static: dict[str, tuple] = {}
            t_begin = sim.simulation.getTime()
            n_steps = int(round(duration / STEP_LENGTH))
            # Vehicles already present after the warm-up need subscribing too, not just new departures.
            pending_veh = list(sim.vehicle.getIDList())
            pending_per = list(sim.person.getIDList())
            for step in range(n_steps):
                if step:
                    sim.simulationStep()
                    pending_veh += sim.simulation.getDepartedIDList()
                    pending_per += sim.simulation.getDepartedPersonIDList()
                for vid in pending_veh:
                    sim.vehicle.subscribe(vid, veh_vars)
                    vclass = sim.vehicle.getVehicleClass(vid)
                    static[vid] = (_KIND.get(vclass, "vehicle"), vclass, sim.vehicle.getLength(vid),
                                   sim.vehicle.getWidth(vid))
                for pid in pending_per:
                    sim.person.subscribe(pid, per_vars)
                    static[pid] = ("pedestrian", "pedestrian", sim.person.getLength(pid), sim.person.getWidth(pid))
                pending_veh, pending_per = [], []
                if injector is not None:
                    injector.step(step)
                for results in (sim.vehicle.getAllSubscriptionResults(), sim.person.getAllSubscriptionResults()):
                    for aid, r in results.items():
                        lane_id = r[tc.VAR_LANE_ID]
                        if aid in rows and first[aid] + len(rows[aid]) != step:
                            continue  # a person riding a vehicle vanishes and reappears: keep the first stretch
                        if aid not in rows:
                            rows[aid], first[aid] = [], step
                        x, y = r[tc.VAR_POSITION]
                        rows[aid].append((x, y, r[tc.VAR_ANGLE], r[tc.VAR_SPEED], code.get(lane_id, -1),
                                          r[tc.VAR_LANEPOSITION], r.get(tc.VAR_LANEPOSITION_LAT, 0.0)))
                for tls in tls_ids:
                    tls_states[tls].append(sim.trafficlight.getRedYellowGreenState(tls))
                if progress is not None and step % 100 == 0:
                    progress(step)
            events = injector.events if injector is not None else []
            injected = injector.actor_kinds if injector is not None else {}
        finally:
            sim.close()
        sim_seconds = time.perf_counter() - started
    tracks = [
        finish_track(aid, *static[aid], first[aid], r, injected.get(aid, ""))
        for aid, r in rows.items() if len(r) >= 2
    ]
    return Recording(net, seed, STEP_LENGTH, t_begin, n_steps, tracks, lanes, lane_ids, tls_states, tls_links,
                     events, sim_seconds)
