"""Build a scenario dataset: simulate shipped networks, cut and filter windows, label, stratify, write Parquet.

Per network (one worker process each, at most ``workers`` at a time; libsumo allows one simulation per process):
simulate → candidate keyframes (grid + reactive) → cheap filters → a seeded random sample of candidates is cut
(neighbours, lanes, signal; collision filter) and labelled → a ranked, decision-stratified list → expert controls
(:func:`rlpost.domain.trajectory.controls_from_waypoints`, batched) → geometry filter (the controls must re-integrate to
the expert states) → validator filter. The parent then draws the final ``n`` rows round-robin over decisions
(rarest first), and inside a decision round-robin over networks, so rare decisions and every network are
represented. Everything is seeded: the same seed, nets and n give the same rows.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import random
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from rlpost.scenarios.nets import DEFAULT_NETS, resolve_net
from rlpost.scenarios.schema import Scenario, split_of, write_scenarios

GEOMETRY_TOLERANCE = 0.5  # m: max distance between expert states and the re-integrated expert controls
LABEL_BUDGET = 5  # cut and label up to this many candidates per requested scenario of a network
SELECT_MARGIN = 1.5  # each network proposes this many times its quota
INTERESTING_SHARE = 0.7  # of the label budget reserved for windows with lane / junction changes ahead
MIN_SEPARATION = 20  # steps: two windows of one ego track must be at least 2 s apart


def net_seed(seed: int, net: str) -> int:
    """The per-network seed derived from the build seed (stable across runs and machines)."""
    return zlib.crc32(f"{seed}:{net}".encode()) % 100_000 + 1


def sim_duration(quota: int) -> float:
    """Seconds to record for a network that must supply ``quota`` scenarios (more time = more rare events)."""
    return float(min(900.0, max(150.0, 1.2 * quota)))


def _stratified(items, key, rng: random.Random, group=None):
    """Round-robin order over strata of ``key`` (rarest first); inside a stratum over ``group`` if given.

    Without ``group`` each stratum is shuffled by ``rng``; with it, each group keeps the input order (its rank).
    """
    strata = defaultdict(list)
    for it in items:
        strata[key(it)].append(it)
    queues = []
    for k in sorted(strata, key=lambda k: (len(strata[k]), k)):
        members = strata[k]
        if group is None:
            rng.shuffle(members)
            queues.append(members)
        else:
            sub = defaultdict(list)
            for it in members:
                sub[group(it)].append(it)
            order = []
            lists = [sub[g] for g in sorted(sub)]
            while any(lists):
                for lst in lists:
                    if lst:
                        order.append(lst.pop(0))
            queues.append(order)
    out = []
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def build_net(net: str, seed: int, quota: int, duration: float | None = None) -> tuple[list[Scenario], dict]:
    """Simulate one network and return up to ``SELECT_MARGIN × quota`` ranked, checked scenarios and a report.

    The report holds the simulation time, candidate and filter counts (degenerate, turnaround, comfort,
    collision, unexplained, geometry, validator) and wall times [s].
    """
    from rlpost.domain.coc import Decision  # noqa: F401  (fail early in the worker if the CoC module is missing)
    from rlpost.domain.trajectory import controls_from_waypoints, unicycle_rollout
    from rlpost.scenarios.check import _consistency, check_scenario
    from rlpost.scenarios.labels import label_window
    from rlpost.scenarios.sumo_sim import simulate
    from rlpost.scenarios.windows import WindowCutter

    t_start = time.perf_counter()
    s = net_seed(seed, net)
    rec = simulate(net, s, duration or sim_duration(quota))
    t_sim = time.perf_counter() - t_start
    cutter = WindowCutter(rec)
    cands = cutter.candidates(stride=1.0)
    rng = random.Random(s)
    rng.shuffle(cands)
    # Most raw windows are plain cruising or queueing. Label windows whose route changes lane or crosses a
    # junction in the next 6.4 s, and reactive keyframes, first (up to INTERESTING_SHARE of the budget), so the
    # rare decisions reach the stratifier at all.
    budget = LABEL_BUDGET * quota
    busy = [c for c in cands if c[2] == "reactive" or _lane_changes(rec, c)]
    calm = [c for c in cands if not (c[2] == "reactive" or _lane_changes(rec, c))]
    head = busy[: int(INTERESTING_SHARE * budget)]
    cands = head + calm + busy[len(head):]
    counts = Counter()
    labelled = []
    for ti, step, kind in cands:
        if len(labelled) >= budget:
            break
        win = cutter.cut(ti, step, kind)
        if win is None:
            continue
        lab = label_window(win, random.Random(f"{s}:{ti}:{step}"))
        if lab is None:
            counts["unexplained"] += 1
            continue
        labelled.append((win, lab))
    ranked, taken = [], defaultdict(list)
    for win, lab in _stratified(labelled, key=lambda wl: wl[1].decision_key, rng=rng):
        if any(abs(win.step - other) < MIN_SEPARATION for other in taken[win.track]):
            continue
        taken[win.track].append(win.step)
        ranked.append((win, lab))
        if len(ranked) >= math.ceil(SELECT_MARGIN * quota):
            break
    t_label = time.perf_counter() - t_start - t_sim
    out = []
    if ranked:
        fut = np.stack([w.future for w, _ in ranked])
        v0 = np.array([w.history[-1, 3] for w, _ in ranked])
        controls = controls_from_waypoints(fut[..., :2], v0)
        err = np.linalg.norm(unicycle_rollout(controls, v0)[..., :2] - fut[..., :2], axis=-1).max(-1)
        consistency = _consistency()
        for (win, lab), u, e in zip(ranked, controls, err):
            if e > GEOMETRY_TOLERANCE:
                counts["geometry"] += 1
                continue
            sc = _scenario(win, lab, u, rec.tracks[win.track].actor_id)
            if check_scenario(sc, consistency):
                counts["validator"] += 1
                continue
            out.append(sc)
    report = {
        "net": net, "seed": s, "simulated_s": rec.n_steps * rec.dt, "sim_wall_s": round(t_sim, 2),
        "label_wall_s": round(t_label, 2), "wall_s": round(time.perf_counter() - t_start, 2),
        "tracks": len(rec.tracks), "injected": dict(Counter(e["kind"] for e in rec.events)),
        "candidates": cutter.counts["candidates"], "labelled": len(labelled), "proposed": len(out),
        "filters": {**{k: v for k, v in cutter.counts.items() if k != "candidates"}, **counts},
    }
    return out, report


def _lane_changes(rec, cand) -> bool:
    """Whether the ego's lane code changes within the window's future (lane change, junction, merge)."""
    tr = rec.tracks[cand[0]]
    k = cand[1] - tr.start
    lanes = tr.lane[k: k + 65]
    return bool((lanes != lanes[0]).any())


def _scenario(win, lab, controls, actor_id: str) -> Scenario:
    sid = f"{win.net}-{win.seed}-{actor_id}-{win.step}"
    return Scenario(
        scenario_id=sid, source=win.net, seed=win.seed, t0=round(win.t0, 1), split=split_of(sid),
        history=win.history, future=win.future, expert_controls=controls, ego_length=win.ego_length,
        ego_width=win.ego_width, agent_states=win.agent_states, agent_size=win.agent_size,
        agent_type=list(win.agent_type), agent_valid=win.agent_valid, lanes=win.lanes, ego_lane_id=win.ego_lane_id,
        tl_state=win.tl_state, tl_distance=win.tl_distance, decision_longitudinal=lab.longitudinal,
        decision_lateral=lab.lateral, decision_direction=lab.direction, factors=lab.factors,
        meta_longitudinal=lab.meta_longitudinal, meta_lateral=lab.meta_lateral, coc_trace=lab.coc_trace,
        keyframe=win.keyframe, agent_ids=list(win.agent_ids), factor_keys=list(lab.factor_keys),
    )


def _worker(args):
    return build_net(*args)


def build_dataset(out, n: int, nets=None, seed: int = 0, workers: int = 2, progress: bool = True,
                  duration: float | None = None) -> dict:
    """Build ``n`` scenarios from ``nets`` (default :data:`DEFAULT_NETS`) into ``out``; returns the report.

    out: folder (gets ``scenarios.parquet`` and ``report.json``) or a ``.parquet`` file path. workers: parallel
    network simulations (processes). duration: seconds recorded per network (default from the quota).
    Raises ValueError for n < 1 or an unknown network and OSError for an unwritable ``out`` — before simulating.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: the number of scenarios must be an integer >= 1, got {n!r}")
    nets = list(nets or DEFAULT_NETS)
    if not nets:
        raise ValueError("nets: give at least one network")
    for name in nets:
        resolve_net(name)
    out = Path(out)
    folder = out.parent if out.suffix == ".parquet" else out
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".rlpost-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"out: cannot write to {folder}: {exc.strerror or exc}") from exc
    # Over-ask each net by 30 %: some nets (bs3d gridlocks) supply fewer windows than their share, and the
    # stratified draw below then fills the request from the others.
    quota = math.ceil(1.3 * n / len(nets))
    started = time.perf_counter()
    jobs = [(name, seed, quota, duration) for name in nets]
    results: dict[str, tuple] = {}
    bar = _bar(progress, len(nets))
    if workers <= 1 or len(nets) == 1:
        for job in jobs:
            results[job[0]] = build_net(*job)
            bar.update(1)
    else:
        with mp.get_context("spawn").Pool(min(workers, len(nets))) as pool:
            for job, res in zip(jobs, pool.imap(_worker, jobs)):
                results[job[0]] = res
                bar.update(1)
    bar.close()
    pool_items = [(name, rank, sc) for name in nets for rank, sc in enumerate(results[name][0])]
    chosen = _stratified(pool_items, key=lambda it: it[2].decision_key, rng=random.Random(seed),
                         group=lambda it: nets.index(it[0]))
    chosen = sorted(chosen[:n], key=lambda it: (nets.index(it[0]), it[1]))
    scenarios = [sc for _, _, sc in chosen]
    if not scenarios:
        raise RuntimeError(f"no scenario survived the filters on {nets}; see the filter counts: "
                           f"{[results[k][1]['filters'] for k in nets]}")
    path = write_scenarios(out, scenarios)
    report = {
        "n_requested": n, "n_written": len(scenarios), "seed": seed, "nets": nets, "path": str(path),
        "wall_s": round(time.perf_counter() - started, 2),
        "per_net": [results[k][1] for k in nets],
        "decisions": dict(Counter(sc.decision_key for sc in scenarios).most_common()),
        "sources": dict(Counter(sc.source for sc in scenarios)),
        "splits": dict(Counter(sc.split for sc in scenarios)),
    }
    (path.parent / "report.json").write_text(json.dumps(report, indent=2))
    return report


class _NoBar:
    def update(self, k):
        pass

    def close(self):
        pass


def _bar(progress: bool, total: int):
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="networks", unit="net")
