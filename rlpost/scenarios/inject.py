"""The project's injection layer: events SUMO does not produce by itself, put into the running simulation.

SUMO drivers never park half in a lane, pedestrians only cross where demand sends them, and lane changes are
polite. For the decisions the policy must learn (nudge, yield, react to a cut-in) the layer adds, through TraCI,
so that SUMO's own drivers react to them:

- **parked**: a vehicle stopped on the right lane with a lateral offset (stop parameter ``posLat``, sublane
  model) so that it blocks 0.6–1.4 m of the lane; followers pass it by shifting left within the lane (in-lane
  nudge) or across the lane line (out-of-lane nudge), or change lanes, or wait.
- **pedestrian**: a person walking from one sidewalk of a junction to another across a crossing; drivers yield.
- **cut_in**: a vehicle with a follower 4–20 m behind in the neighbouring lane is made to change into that lane
  with only collision avoidance respected (lane-change mode 256), so the follower has to brake.

Every event is recorded (kind, actor, step, details) so the build can report what was injected.
"""

from __future__ import annotations

import random

import numpy as np

PARK_PERIOD = 15.0  # s between parked-vehicle injections
PARK_DURATION = (60.0, 180.0)  # s a parked vehicle stays
MAX_PARKED = 10
PED_PERIOD = 4.0  # s between pedestrian injections (nets with crossings)
CUT_IN_PERIOD = 3.0  # s between cut-in attempts
CUT_IN_GAP = (4.0, 20.0)  # m: follower distance behind the cutting vehicle
PARKED_SIZE = (4.6, 1.8)  # m, length and width of injected parked cars
_DEFAULT_LC_MODE = 1621  # SUMO's default lane-change mode
_CUT_IN_LC_MODE = 256  # obey TraCI requests, only avoiding immediate collisions


class Injector:
    """Adds injected events to a running SUMO simulation, one call per recorded step.

    sim: the libsumo / traci module (already started). spec: the :class:`NetSpec`. lanes: lane id ->
    :class:`LaneInfo`. seed: the event RNG's seed. After the run, ``events`` lists the events and
    ``actor_kinds`` maps each injected actor id to its event kind.
    """

    def __init__(self, sim, spec, lanes, seed: int):
        self.sim = sim
        self.dt = sim.simulation.getDeltaT()
        self.rng = random.Random(seed * 7919 + 17)
        self.events: list[dict] = []
        self.actor_kinds: dict[str, str] = {}
        self._parked: dict[str, int] = {}  # id -> step to remove it
        self._restore: dict[str, int] = {}  # cut-in vehicle -> step to restore its lane-change mode
        rightmost: dict[str, int] = {}  # edge -> index of its rightmost car lane (index 0 may be a sidewalk)
        for ln in lanes.values():
            if ln.function == "normal" and ln.cars:
                rightmost[ln.edge] = min(rightmost.get(ln.edge, ln.index), ln.index)
        self._park_lanes = sorted(
            lid for lid, ln in lanes.items()
            if ln.function == "normal" and ln.cars and ln.index == rightmost[ln.edge] and ln.length >= 50.0
            and ln.speed <= 17.0
        )
        self._to_configure: list[tuple] = []
        self._park_type = _parked_type(sim)  # parked vehicles added last step, to stop once inserted
        self._ped_walks = self._walks(_sidewalk_pairs(lanes)) if spec.pedestrians else []
        self._n = 0

    def _every(self, step: int, period: float) -> bool:
        return step % max(1, int(round(period / self.dt))) == 0

    def step(self, step: int) -> None:
        """Inject the events due at recorded step ``step`` and clean up finished ones."""
        for vid, until in list(self._parked.items()):
            if step >= until:
                if vid in self.sim.vehicle.getIDList():
                    # libsumo fails on the next step if a removed vehicle is still subscribed.
                    self.sim.vehicle.unsubscribe(vid)
                    self.sim.vehicle.remove(vid)
                del self._parked[vid]
        for vid, until in list(self._restore.items()):
            if step >= until:
                if vid in self.sim.vehicle.getIDList():
                    self.sim.vehicle.setLaneChangeMode(vid, _DEFAULT_LC_MODE)
                del self._restore[vid]
        for args in self._to_configure:
            self._configure_parked(*args)
        self._to_configure = []
        if self._park_lanes and len(self._parked) < MAX_PARKED and self._every(step, PARK_PERIOD):
            self._park(step)
        if self._ped_walks and self._every(step, PED_PERIOD):
            self._pedestrian(step)
        if self._every(step + 7, CUT_IN_PERIOD):
            self._cut_in(step)

    def _new_id(self, kind: str) -> str:
        self._n += 1
        return f"inj_{kind}_{self._n}"

    def _park(self, step: int) -> None:
        busy = [lid for lid in self._park_lanes if self.sim.lane.getLastStepVehicleNumber(lid) > 0]
        lid = self.rng.choice(busy or self._park_lanes)
        edge, idx = self.sim.lane.getEdgeID(lid), int(lid.rsplit("_", 1)[1])
        length, width = self.sim.lane.getLength(lid), self.sim.lane.getWidth(lid)
        pos = self.rng.uniform(0.45, 0.85) * length
        overlap = self.rng.uniform(0.6, 1.4)  # m of the lane the parked car occupies
        car_width = PARKED_SIZE[1]
        pos_lat = -(0.5 * width + 0.5 * car_width - overlap)
        vid = self._new_id("parked")
        route = f"{vid}_route"
        self.sim.route.add(route, [edge])
        self.sim.vehicle.add(vid, route, typeID=self._park_type, departLane=str(idx), departPos=f"{pos - 3:.2f}",
                             departSpeed="0")
        until = step + int(round(self.rng.uniform(*PARK_DURATION) / self.dt))
        self._to_configure.append((vid, edge, idx, pos, pos_lat, until, lid, overlap, step))

    def _configure_parked(self, vid, edge, idx, pos, pos_lat, until, lid, overlap, step) -> None:
        # SUMO inserts an added vehicle at the next step, and may fail to (lane full): then it is dropped.
        if vid not in self.sim.vehicle.getIDList():
            if vid in self.sim.simulation.getPendingVehicles():
                self.sim.vehicle.remove(vid)
            return
        self.sim.vehicle.setStop(vid, edge, pos=pos, laneIndex=idx, duration=1e6)
        self.sim.vehicle.setStopParameter(vid, 0, "posLat", f"{pos_lat:.3f}")
        self._parked[vid] = until
        self.actor_kinds[vid] = "parked"
        self.events.append({"kind": "parked", "actor": vid, "step": step, "lane": lid, "pos": pos,
                            "overlap": overlap})

    def _walks(self, pairs) -> list[tuple[tuple[str, ...], float, float]]:
        """(edges, depart_pos, arrival_pos) of walks for sidewalk pairs: one walking stage from ``src`` to ``dst``.

        The walk starts 8 m before the end of ``src``. Pairs of an edge and its own reverse are left out: whether
        such a walk is connected depends on where on the edge it starts, and SUMO aborts the whole run on a
        disconnected walk.
        """
        walks = []
        for src, dst in pairs:
            if src.lstrip("-") == dst.lstrip("-"):
                continue
            depart = max(0.0, self.sim.lane.getLength(f"{src}_0") - 8.0)
            arrival = min(5.0, 0.5 * self.sim.lane.getLength(f"{dst}_0"))
            route = self.sim.simulation.findIntermodalRoute(src, dst, modes="", departPos=depart, arrivalPos=arrival)
            if len(route) == 1 and route[0].type == 2 and route[0].edges[0] == src and route[0].edges[-1] == dst:
                walks.append((tuple(route[0].edges), depart, arrival))
        return walks

    def _pedestrian(self, step: int) -> None:
        edges, depart, arrival = self.rng.choice(self._ped_walks)
        pid = self._new_id("ped")
        self.sim.person.add(pid, edges[0], pos=depart)
        self.sim.person.appendWalkingStage(pid, list(edges), arrivalPos=arrival)
        self.actor_kinds[pid] = "pedestrian"
        self.events.append({"kind": "pedestrian", "actor": pid, "step": step, "from": edges[0], "to": edges[-1]})

    def _cut_in(self, step: int) -> None:
        ids = sorted(self.sim.vehicle.getIDList())
        self.rng.shuffle(ids)
        for vid in ids[:40]:
            if vid in self.actor_kinds or self.sim.vehicle.getSpeed(vid) < 4.0:
                continue
            lane = self.sim.vehicle.getLaneID(vid)
            if lane.startswith(":"):
                continue
            idx = self.sim.vehicle.getLaneIndex(vid)
            n_lanes = self.sim.edge.getLaneNumber(self.sim.vehicle.getRoadID(vid))
            sides = [(+1, self.sim.vehicle.getLeftFollowers), (-1, self.sim.vehicle.getRightFollowers)]
            self.rng.shuffle(sides)
            for side, followers in sides:
                if not 0 <= idx + side < n_lanes:
                    continue
                close = [(f, d) for f, d in followers(vid) if CUT_IN_GAP[0] <= d <= CUT_IN_GAP[1]]
                if not close:
                    continue
                self.sim.vehicle.setLaneChangeMode(vid, _CUT_IN_LC_MODE)
                self.sim.vehicle.changeLane(vid, idx + side, 3.0)
                self._restore[vid] = step + int(round(6.0 / self.dt))
                self.events.append({"kind": "cut_in", "actor": vid, "step": step, "follower": close[0][0],
                                    "gap": close[0][1], "side": "left" if side > 0 else "right"})
                return


def _sidewalk_pairs(lanes) -> list[tuple[str, str]]:
    """(from_edge, to_edge) sidewalk pairs on opposite sides of a road at junctions with crossings.

    A pair is two pedestrian-only edges both near one crossing's ends, one near each end, so the walk between
    them goes over that crossing.
    """
    sidewalks = [(ln.edge, ln.shape) for lid, ln in lanes.items() if ln.function == "normal" and not ln.cars
                 and ln.pedestrians and ln.index == 0]
    pairs = set()
    for _lid, ln in lanes.items():
        if ln.function != "crossing":
            continue
        ends = (ln.shape[0], ln.shape[-1])
        near = [[], []]
        for edge, shape in sidewalks:
            for k, end in enumerate(ends):
                d = min(np.linalg.norm(shape[0] - end), np.linalg.norm(shape[-1] - end))
                if d < 15.0:
                    near[k].append(edge)
        pairs.update((a, b) for a in near[0] for b in near[1] if a != b)
        pairs.update((b, a) for a in near[0] for b in near[1] if a != b)
    return sorted(pairs)


def _parked_type(sim) -> str:
    """A passenger-car vehicle type for parked cars (``DEFAULT_VEHTYPE`` may be a distribution with bicycles)."""
    name = "rlpost_parked"
    cars = sorted(t for t in sim.vehicletype.getIDList() if sim.vehicletype.getVehicleClass(t) == "passenger")
    sim.vehicletype.copy(cars[0] if cars else "DEFAULT_VEHTYPE", name)
    sim.vehicletype.setVehicleClass(name, "passenger")
    sim.vehicletype.setLength(name, PARKED_SIZE[0])
    sim.vehicletype.setWidth(name, PARKED_SIZE[1])
    return name
