"""The SUMO networks shipped inside the ``eclipse-sumo`` wheel, and how to run each one headless.

A :class:`NetSpec` names the network, traffic-demand and signal-plan files of one shipped scenario (paths relative to
``SUMO_HOME``) and the time window worth simulating. ``sumo_command`` turns it into a SUMO command line at 0.1 s that
writes no output files (the shipped ``.sumocfg`` files add GUI settings and output writers that a headless,
read-only-install run must not use, so the configs are not loaded as they are).

Demand comes from the shipped files where they have it (real trips, real counts); where a shipped net only has
game or DRT demand (``DRT``), trips between random edges are generated here, seeded, so the run is reproducible.
"""

from __future__ import annotations

import os
import random
import runpy
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

STEP_LENGTH = 0.1  # s, the project's 10 Hz (docs/design.md §2)


def sumo_home() -> Path:
    """The ``SUMO_HOME`` of the installed ``eclipse-sumo`` wheel; a clear error if it is missing."""
    try:
        import sumo
    except ImportError:
        raise RuntimeError(
            "the SUMO simulator is not installed: pip install 'rlpost[data]' (eclipse-sumo, sumolib, traci)"
        ) from None
    return Path(sumo.SUMO_HOME)


@dataclass(frozen=True)
class NetSpec:
    """One shipped scenario.

    name: the key users pass to ``--nets``. net: the ``.net.xml[.gz]`` file; routes / additional: demand and
    signal-plan files (all relative to ``SUMO_HOME``). begin: simulation start time [s] (the Braunschweig hour
    starts at 15:00 = 54000 s). warmup: seconds simulated before recording so the net is populated.
    demand: "files" (use ``routes``), "rilsa" (run the shipped ``makeRoutes.py`` that writes real counts) or
    "random" (seeded random trips, ``trips_per_hour``). options: extra SUMO options.
    """

    name: str
    description: str
    net: str
    routes: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    begin: float = 0.0
    warmup: float = 60.0
    demand: str = "files"
    trips_per_hour: int = 0
    options: tuple[str, ...] = ()
    pedestrians: bool = False  # the net has crossings where injected pedestrians can walk
    extra: dict = field(default_factory=dict)


_GAME = "tools/game"
_RILSA = "tools/sumolib/scenario/scenarios/RealWorld"

NETS: dict[str, NetSpec] = {
    spec.name: spec
    for spec in (
        NetSpec(
            "fokr_bs_demo",
            "Braunschweig research intersection: one real hour of trips (cars, bicycles, pedestrians), "
            "real signal plan",
            f"{_GAME}/fokr_bs_demo/fokr_bs.net.xml.gz",
            routes=tuple(f"{_GAME}/fokr_bs_demo/{f}" for f in (
                "15_16_bicycle.trips.xml", "15_16_ped.trips.xml", "15_16_veh.trips.xml.gz")),
            additional=(f"{_GAME}/fokr_bs_demo/vtypes_default.add.xml", f"{_GAME}/fokr_bs_demo/signalPlan.add.xml"),
            begin=54000.0,
            warmup=90.0,
            pedestrians=True,
        ),
        NetSpec(
            "fkk_in",
            "Ingolstadt research intersection with its signal program and flows",
            f"{_GAME}/fkk_in/ingolstadt.net.xml.gz",
            routes=(f"{_GAME}/fkk_in/fkk_in.rou.xml",),
            additional=(f"{_GAME}/fkk_in/fkk_in.tls.add.xml",),
            warmup=90.0,
            pedestrians=True,
        ),
        NetSpec(
            "A10KW",
            "OSM extract of the A10 motorway ramp (Berlin ring, Kreuz Werder) with motorway and ramp demand",
            f"{_GAME}/A10KW/osm.net.xml",
            routes=tuple(f"{_GAME}/A10KW/{f}" for f in (
                "osm.passenger.rou.xml", "osm.truck.rou.xml", "osm.passenger_mw.rou.xml", "osm.truck_mw.rou.xml",
                "osm.passenger_mwb.rou.xml", "osm.truck_mwb.rou.xml", "extra.rou.xml")),
            warmup=120.0,
            options=("--ignore-route-errors",),
        ),
        NetSpec(
            "bs3d",
            "OSM Braunschweig junction (the 3D demo) with turning flows",
            f"{_GAME}/bs3d/bs.net.xml",
            routes=(f"{_GAME}/bs3d/bs3d.rou.xml",),
            warmup=90.0,
            pedestrians=True,
        ),
        NetSpec(
            "DRT",
            "OSM urban net (Berlin-Adlershof) with seeded random car trips",
            f"{_GAME}/DRT/osm.net.xml",
            demand="random",
            trips_per_hour=2400,
            warmup=120.0,
            options=("--ignore-route-errors",),
        ),
        NetSpec(
            "rilsa1",
            "RiLSA real-world signal example 1: a signalised junction with counted turning flows",
            f"{_RILSA}/RiLSA_example1/rilsa1.net.xml",
            additional=(f"{_RILSA}/RiLSA_example1/vtypes.add.xml", f"{_RILSA}/RiLSA_example1/rilsa1_tls.add.xml"),
            demand="rilsa",
            warmup=90.0,
            extra={"make_routes": f"{_RILSA}/RiLSA_example1/makeRoutes.py"},
        ),
        NetSpec(
            "rilsa2",
            "RiLSA real-world signal example 2 with counted flows",
            f"{_RILSA}/RiLSA_example2/rilsa2.net.xml",
            additional=(f"{_RILSA}/RiLSA_example2/vtypes.add.xml", f"{_RILSA}/RiLSA_example2/rilsa2_tls.add.xml"),
            demand="rilsa",
            warmup=90.0,
            extra={"make_routes": f"{_RILSA}/RiLSA_example2/makeRoutes.py"},
        ),
    )
}

DEFAULT_NETS = ("fokr_bs_demo", "fkk_in", "A10KW", "bs3d", "DRT", "rilsa1")


def resolve_net(name: str) -> NetSpec:
    """The :class:`NetSpec` called ``name``; ``ValueError`` listing the known names otherwise."""
    if name not in NETS:
        raise ValueError(f"unknown network {name!r}; shipped networks are: {', '.join(sorted(NETS))}")
    spec = NETS[name]
    home = sumo_home()
    for rel in (spec.net, *spec.routes, *spec.additional, *spec.extra.values()):
        if not (home / rel).exists():
            raise FileNotFoundError(f"network {name!r}: file {home / rel} is missing from the eclipse-sumo install")
    return spec


@contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _random_trips(net_file: Path, out: Path, seed: int, begin: float, end: float, per_hour: int) -> None:
    """Seeded random passenger trips between edges that allow cars and are long enough to drive on.

    SUMO routes each trip itself at departure; unreachable pairs are dropped (``--ignore-route-errors``).
    Both ends are taken from the larger, longer roads (length-weighted) so trips cross the net instead of
    bouncing around cul-de-sacs, whose dead-end turnarounds make impossible headings.
    """
    import sumolib  # only the random-demand nets need the net parsed in Python

    net = sumolib.net.readNet(str(net_file))
    edges = [
        e for e in net.getEdges()
        if e.allows("passenger") and e.getFunction() == "" and e.getLength() > 30 and e.getSpeed() >= 8
    ]
    if len(edges) < 2:
        raise RuntimeError(f"{net_file}: fewer than two drivable edges for random trips")
    weights = [e.getLength() * e.getLaneNumber() for e in edges]
    rng = random.Random(seed)
    count = max(1, int(round((end - begin) * per_hour / 3600.0)))
    root = ET.Element("routes")
    ET.SubElement(root, "vType", id="car", vClass="passenger")
    for i in range(count):
        src, dst = rng.choices(edges, weights, k=2)
        if src is dst:
            continue
        ET.SubElement(
            root, "trip", id=f"rt{i}", type="car", depart=f"{begin + i * (end - begin) / count:.1f}",
            attrib={"from": src.getID(), "to": dst.getID(), "departLane": "best", "departSpeed": "max"},
        )
    ET.ElementTree(root).write(out)


def sumo_command(spec: NetSpec, seed: int, duration: float, workdir: Path) -> list[str]:
    """The SUMO command line for ``spec``: 0.1 s steps, sublane model, no output files, seeded.

    duration: seconds simulated after the warm-up. workdir: a writable scratch folder for generated demand.
    The sublane model (lateral resolution 0.8 m) makes lane changes continuous and lets drivers pass obstacles
    that block only part of a lane, which the nudge scenes need; SUMO's default lane change is a 0.1 s jump.
    """
    home = sumo_home()
    end = spec.begin + spec.warmup + duration
    routes = [str(home / r) for r in spec.routes]
    if spec.demand == "random":
        trips = workdir / f"{spec.name}.trips.xml"
        _random_trips(home / spec.net, trips, seed, spec.begin, end, spec.trips_per_hour)
        routes.append(str(trips))
    elif spec.demand == "rilsa":
        # makeRoutes.py writes flows.rou.xml (the shipped real counts) into the current directory.
        with _cwd(workdir):
            runpy.run_path(str(home / spec.extra["make_routes"]), run_name="__main__")
        routes.append(str(workdir / "flows.rou.xml"))
    cmd = [
        "sumo", "--net-file", str(home / spec.net),
        "--begin", f"{spec.begin:g}", "--end", f"{end:g}",
        "--step-length", f"{STEP_LENGTH:g}", "--seed", str(seed),
        "--lateral-resolution", "0.8",
        "--no-step-log", "true", "--no-warnings", "true", "--duration-log.disable", "true",
        "--time-to-teleport", "-1", "--collision.action", "remove", "--xml-validation", "never",
        *spec.options,
    ]
    if routes:
        cmd += ["--route-files", ",".join(routes)]
    if spec.additional:
        cmd += ["--additional-files", ",".join(str(home / a) for a in spec.additional)]
    return cmd
