"""Peak memory per actor of a running rlpost run, sampled from outside (benchmarks only: bench/scale.py,
bench/sync.py, bench/real_model.py).

The run state in Redis (``rlpost.storage.store.RunState``: ``roles`` -> pid, as ``rlpost status`` shows them) names
every actor's process; single-node runs only, since the pids are looked up on this machine. RSS counts shared pages
(torch's libraries) in every process, so the sum over actors overstates the machine's use; each actor's own peak
tells whether a role fits a node.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

RAY_SERVICE_TITLES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")  # Ray's services that run as ray:: processes


class MemorySampler(threading.Thread):
    """Peak RSS per role: every ``period_s`` the run state's actor pids (learner:0.., rollout:0, reward:0) and this
    driver, each with its child processes, through psutil; ``VmHWM`` (the kernel's own peak) of each actor's
    main process as it was last seen. Interrupts the run (SIGINT to this process) when the machine's available
    memory falls below ``min_free_gib``, so a rung that does not fit stops before it starves other jobs."""

    def __init__(self, redis_url: str, run: str, min_free_gib: float, period_s: float = 0.5):
        super().__init__(daemon=True)
        self.redis_url, self.run_name, self.min_free, self.period = redis_url, run, min_free_gib * 2**30, period_s
        self.peak: dict[str, int] = {}
        self.hwm: dict[str, int] = {}
        self.pids: dict[str, int] = {}
        self.min_available: int | None = None
        self.tripped: str | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        import psutil

        from rlpost.storage.store import read_run_state

        while not self._halt.is_set():
            try:
                roles = read_run_state(self.redis_url, self.run_name).get("roles", {})
                self.pids.update({name: info["pid"] for name, info in roles.items() if info.get("pid")})
            except Exception:  # noqa: BLE001 - before the run registers, or Redis briefly busy: sample later
                pass
            actor_pids = set(self.pids.values())
            for name, rss in self._sample(psutil, actor_pids).items():
                self.peak[name] = max(self.peak.get(name, 0), rss)
            for name, pid in [("driver", os.getpid()), *self.pids.items()]:
                hwm = _vm_hwm(pid)
                if hwm is not None:
                    self.hwm[name] = max(self.hwm.get(name, 0), hwm)
            available = psutil.virtual_memory().available
            self.min_available = available if self.min_available is None else min(self.min_available, available)
            if available < self.min_free and self.tripped is None:
                self.tripped = (f"available memory {available / 2**30:.1f} GiB < guard {self.min_free / 2**30:.1f} "
                                "GiB: run stopped")
                os.kill(os.getpid(), signal.SIGINT)
            self._halt.wait(self.period)


    def _sample(self, psutil, actor_pids: set[int]) -> dict[str, int]:
        """RSS now: each actor with its own children (a vLLM engine starts helper processes), this driver alone,
        and ``ray+redis``: Ray's own services in the driver's process tree (GCS, raylet with the object store,
        dashboard and agents, monitors) and the Redis server. Worker processes (``ray::...``, idle workers) are
        not services: before the run state names an actor its process is left out, and its main process's VmHWM
        still covers that time."""
        out, counted = {}, set()
        for name, pid in self.pids.items():
            try:
                tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
                out[name] = sum(p.memory_info().rss for p in tree)
                counted.update(p.pid for p in tree)
            except psutil.Error:
                continue
        try:
            me = psutil.Process(os.getpid())
            out["driver"] = me.memory_info().rss
            rest = 0
            for p in me.children(recursive=True):
                if p.pid in counted or p.pid in actor_pids:
                    continue
                try:
                    cmd = p.cmdline()
                    title = cmd[0] if cmd else ""
                    if (title.startswith("ray::") and title not in RAY_SERVICE_TITLES) or any(
                            "default_worker.py" in c for c in cmd):
                        continue
                    rest += p.memory_info().rss
                except psutil.Error:
                    pass
            out["ray+redis"] = rest
        except psutil.Error:
            pass
        return out


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
