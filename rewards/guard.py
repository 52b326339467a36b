"""Running one reward function so that it cannot hang, crash or poison the run.

``GuardedReward`` calls a reward either in a persistent worker process (default) or in the calling process
(``RewardSpec.in_process``, no deadline). The worker is started with the ``forkserver`` (or ``spawn``) method, never
``fork``: forking a process that has started torch/OpenMP or Ray threads can deadlock the child.

Deadline semantics (documented contract):
- A batch is split into chunks of ``chunk_size`` samples, sent one at a time to the worker. ``deadline_s`` bounds
  each chunk. A chunk that misses it is killed (the worker's whole process group, SIGKILL) and its samples get
  status ``timeout`` and the fallback value; the next chunk runs in a fresh worker. A hang therefore costs only
  the samples of its chunk; other chunks and other reward components of the same samples are unaffected.
- Async functions are awaited in the worker under ``asyncio.wait_for(deadline_s)`` (cooperative, the worker
  survives); the kill at ``deadline_s + ASYNC_GRACE_S`` backs it up.
- After ``max_timeouts_per_batch`` timed-out chunks, the rest of the batch is marked timeout without running, so
  a function that always hangs costs a batch about that many deadlines, not one per chunk.
- Worker start-up (imports) is not counted against the deadline; it is bounded by ``STARTUP_TIMEOUT_S``.
- An exception, a crashed worker (segfault, ``os._exit``), unpicklable inputs or outputs: status ``error`` with a
  message naming the reward; never silent (the pipeline counts and logs every non-ok status).

Like any forkserver/spawn user, a script that scores with worker processes needs the
``if __name__ == "__main__":`` guard (the worker imports the main module; without the guard it would re-run it).
Scenario and completion classes are imported in the worker before it reports ready, so their import time counts
against neither the deadline nor the latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import inspect
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

from rlpost.rewards.registry import RewardEntry, resolve_reward
from rlpost.rewards.types import RewardResult, normalise_results

STARTUP_TIMEOUT_S = 120.0  # importing a plugin (torch, a tokenizer) can take a while on a busy 2-core machine
ASYNC_GRACE_S = 0.5  # the worker's own asyncio timeout fires first; the kill is the backstop


def _describe(exc: BaseException) -> str:
    """``Type: message (at file:line in function)`` of the innermost frame: the culprit, in one line."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


@contextlib.contextmanager
def paused_gc():
    """Pause Python's cyclic garbage collector for a block (re-enabled after it, whatever happens).

    Why: scoring a batch allocates millions of small acyclic objects (floats, tuples, result records), and each
    allocation burst triggers collections that rescan every live object of the process; in a process that holds a
    large batch this cost more than the rewards themselves (measured: a 4096-sample pipeline call spent ~30 % of
    its time in collections). Reference counting still frees all acyclic garbage immediately.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def call_reward(entry: RewardEntry, params: dict[str, Any], completions: Sequence, scenarios: Sequence,
                fallback: float, async_timeout_s: float | None, loop: asyncio.AbstractEventLoop | None = None):
    """Call ``entry.fn`` once and normalise its output: a list of ``len(completions)`` RewardResult. Never raises
    for a plugin's fault (exception → status error; async timeout → status timeout)."""
    n = len(completions)
    try:
        with paused_gc():
            out = entry.fn(completions, scenarios, **params)
            if inspect.isawaitable(out):
                out = _await(out, async_timeout_s, loop)
    except _DeadlineExceeded:
        msg = f"reward {entry.name!r}: async call exceeded its deadline of {async_timeout_s} s"
        return [RewardResult.failed("timeout", fallback, msg) for _ in range(n)]
    except Exception as exc:  # a plugin's fault: reported per sample, never raised into the run
        msg = f"reward {entry.name!r} raised {_describe(exc)}"
        return [RewardResult.failed("error", fallback, msg) for _ in range(n)]
    return normalise_results(entry.name, out, n, fallback)


class _DeadlineExceeded(Exception):
    """The guard's own async deadline fired (distinct from a TimeoutError the plugin raises itself)."""


def _await(awaitable, timeout_s: float | None, loop: asyncio.AbstractEventLoop | None):
    async def bounded():
        task = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            task.cancel()
            raise _DeadlineExceeded
        return task.result()  # the plugin's own exceptions propagate unchanged

    if loop is not None:
        return loop.run_until_complete(bounded())
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    # Called from inside a running event loop (e.g. an async actor): run the coroutine on its own loop in a thread.
    box: dict[str, Any] = {}

    def run():
        try:
            box["out"] = asyncio.run(bounded())
        except BaseException as exc:  # re-raised in the caller's thread below
            box["exc"] = exc

    thread = threading.Thread(target=run, name="rlpost-reward-async")
    thread.start()
    thread.join()
    if "exc" in box:
        raise box["exc"]
    return box["out"]


def _worker_main(conn, ref: str, params: dict[str, Any], fallback: float, async_timeout_s: float | None,
                 preload: tuple[str, ...] = ()) -> None:
    """Worker process: resolve the reward, then answer ("call", completions, scenarios) messages until EOF.

    preload: modules to import before reporting ready (those defining the scenario classes), so that unpickling
    the first batch does not spend the deadline on imports (a scenario module may pull in torch: seconds).
    """
    os.environ["OMP_NUM_THREADS"] = "1"  # many workers and actors share the cores (docs/machine-notes.md)
    os.setpgid(0, 0)  # own process group: a timeout kills the plugin's own subprocesses too
    try:
        for module in preload:
            importlib.import_module(module)
        entry = resolve_reward(ref)
    except Exception as exc:
        conn.send(("error", f"reward {ref!r} could not be loaded in the worker process: {_describe(exc)}"))
        return
    conn.send(("ready", entry.version))
    loop = asyncio.new_event_loop()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent went away: nothing left to serve
            return
        if msg is None:
            return
        _, completions, scenarios = msg
        start = time.perf_counter()
        results = call_reward(entry, params, completions, scenarios, fallback, async_timeout_s, loop)
        elapsed = time.perf_counter() - start
        try:
            conn.send(("ok", results, elapsed))
        except Exception as exc:  # e.g. an info dict holding an unpicklable object
            conn.send(("error", f"reward {entry.name!r} returned results that cannot be sent back: {_describe(exc)}"))


class GuardedReward:
    """One reward component, called with its guard. ``__call__`` never raises because of the plugin.

    entry: the resolved reward (``resolve_reward``); params: keyword arguments for every call.
    deadline_s: per-chunk deadline [s] (None: none); in_process: call in this process (requires deadline_s None).
    chunk_size, max_timeouts_per_batch, fallback: see ``RewardSpec`` and the module docstring.
    start_method: ``forkserver`` or ``spawn``.
    """

    def __init__(self, entry: RewardEntry, params: dict[str, Any] | None = None, *, deadline_s: float | None = 10.0,
                 in_process: bool = False, chunk_size: int = 64, max_timeouts_per_batch: int = 2,
                 fallback: float = 0.0, start_method: str = "forkserver"):
        if in_process and deadline_s is not None:
            raise ValueError(f"reward {entry.name!r}: in_process=True cannot enforce deadline_s={deadline_s}")
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(f"start_method: expected 'forkserver' or 'spawn' (never 'fork'), got {start_method!r}")
        self.entry = entry
        self.params = dict(entry.default_params) | dict(params or {})
        self.deadline_s = deadline_s
        self.in_process = in_process
        self.chunk_size = chunk_size
        self.max_timeouts_per_batch = max_timeouts_per_batch
        self.fallback = float(fallback)
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # Children fork from a clean server that has only this light module loaded (numpy, no torch threads).
            self._ctx.set_forkserver_preload(["rlpost.rewards.guard"])
        self._proc = None
        self._conn = None
        self.restarts = 0  # worker processes started after the first (timeouts, crashes)
        self._started = 0

    # --- worker lifecycle ---------------------------------------------------------------------------------------
    def _start(self, preload: tuple[str, ...] = ()) -> str | None:
        """Start a worker (importing ``preload`` first); None on success, else the reason it could not start."""
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.entry.ref, self.params, self.fallback, self.deadline_s, preload),
            name=f"rlpost-reward-{self.entry.name}",
            daemon=True,
        )
        try:
            proc.start()
        except Exception as exc:  # e.g. params that cannot be pickled
            return f"reward {self.entry.name!r}: worker process could not start: {_describe(exc)}"
        finally:
            child.close()
        self._proc, self._conn = proc, parent
        self.restarts += self._started > 0
        self._started += 1
        if not parent.poll(STARTUP_TIMEOUT_S):
            self._kill()
            return f"reward {self.entry.name!r}: worker did not start within {STARTUP_TIMEOUT_S} s"
        try:
            msg = parent.recv()
        except (EOFError, OSError):
            code = self._kill()
            return f"reward {self.entry.name!r}: worker exited during start-up (exit code {code})"
        if msg[0] != "ready":
            self._kill()
            return msg[1]
        return None

    def _kill(self) -> int | None:
        """Kill the worker and its process group; return its exit code."""
        proc, self._proc = self._proc, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if proc is None:
            return None
        if proc.is_alive():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):  # group not set up yet: kill the process itself
                proc.kill()
        proc.join(5.0)
        return proc.exitcode

    def close(self) -> None:
        """Stop the worker (politely, then by force). The guard can still be called afterwards (it restarts)."""
        if self._conn is not None and self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
            except (OSError, ValueError):  # already broken: the kill below handles it
                pass
            self._proc.join(1.0)
        self._kill()

    # --- calls --------------------------------------------------------------------------------------------------
    def __call__(self, completions: Sequence, scenarios: Sequence) -> tuple[list[RewardResult], list[float]]:
        """Score aligned completions/scenarios. Returns (results, latency_ms per sample), both of length n.

        latency_ms of a sample is the wall time of the call (chunk) that scored it divided by its sample count:
        rewards are batched, so there is no truer per-sample time.
        """
        n = len(completions)
        if self.in_process:
            start = time.perf_counter()
            results = call_reward(self.entry, self.params, completions, scenarios, self.fallback, None)
            per = (time.perf_counter() - start) * 1e3 / max(n, 1)
            return results, [per] * n
        results: list[RewardResult] = []
        latency: list[float] = []
        timeouts = 0
        startup_error: str | None = None
        for lo in range(0, n, self.chunk_size):
            comps, scens = completions[lo: lo + self.chunk_size], scenarios[lo: lo + self.chunk_size]
            if timeouts >= self.max_timeouts_per_batch:
                msg = (f"reward {self.entry.name!r}: not run, {timeouts} chunks of this batch already timed out "
                       f"(max_timeouts_per_batch={self.max_timeouts_per_batch})")
                results += [RewardResult.failed("timeout", self.fallback, msg) for _ in comps]
                latency += [0.0] * len(comps)
                continue
            # Start-up time counts as neither deadline nor latency; a worker that cannot start is not retried
            # within the same batch (an import error does not heal, and each try costs the imports again).
            startup_error = startup_error or self._ensure_worker(scens)
            start = time.perf_counter()
            chunk = self._fail("error", len(comps), startup_error) if startup_error else \
                self._run_chunk(list(comps), list(scens))
            per = (time.perf_counter() - start) * 1e3 / max(len(comps), 1)
            timeouts += any(r.status == "timeout" for r in chunk)
            results += chunk
            latency += [per] * len(comps)
        return results, latency

    def _fail(self, status: str, n: int, msg: str) -> list[RewardResult]:
        return [RewardResult.failed(status, self.fallback, msg) for _ in range(n)]  # type: ignore[arg-type]

    def _ensure_worker(self, scenarios: Sequence) -> str | None:
        """Start the worker if it is not running; None when it runs, else why it could not start."""
        if self._proc is not None and self._proc.is_alive():
            return None
        self._kill()
        preload = tuple(sorted({type(s).__module__ for s in scenarios[:1]} - {"builtins", "__main__"}))
        return self._start(preload)

    def _run_chunk(self, comps: list, scens: list) -> list[RewardResult]:
        n = len(comps)
        try:
            self._conn.send(("call", comps, scens))
        except Exception as exc:  # unpicklable scenario, broken pipe
            self._kill()
            return self._fail("error", n, f"reward {self.entry.name!r}: inputs could not be sent to the worker: "
                                          f"{_describe(exc)}")
        wait = None if self.deadline_s is None else self.deadline_s + (ASYNC_GRACE_S if self.entry.is_async else 0.0)
        if not self._conn.poll(wait):
            self._kill()
            return self._fail("timeout", n, f"reward {self.entry.name!r}: killed after its deadline of "
                                            f"{self.deadline_s} s (chunk of {n} samples)")
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            code = self._kill()
            return self._fail("error", n, f"reward {self.entry.name!r}: worker process died (exit code {code})")
        if msg[0] != "ok":
            return self._fail("error", n, msg[1])
        results = msg[1]
        if len(results) != n or not all(isinstance(r, RewardResult) for r in results):  # worker protocol check
            return self._fail("error", n, f"reward {self.entry.name!r}: worker answered {len(results)} results for {n}")
        return results
