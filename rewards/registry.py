"""Where reward functions come from: built-ins by name, plugins by dotted path or by entry point.

    @register_reward("lane_bonus", version="2")
    def lane_bonus(completions, scenarios, /, *, bonus=0.1): ...

    resolve_reward("trajectory_quality")      # a built-in
    resolve_reward("mypkg.rewards:lane_bonus") # a dotted path ("module:attribute", attribute may be dotted)
    resolve_reward("lane_bonus")              # an entry point of group "rlpost.rewards" named lane_bonus

The version string is part of every cache key and every logged component record: bump it whenever the function's
output for the same input changes. A function that declares none gets ``UNVERSIONED`` and cannot be cached.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ENTRY_POINT_GROUP = "rlpost.rewards"
UNVERSIONED = "unversioned"
_ATTR = "__rlpost_reward__"  # set on decorated functions: their RewardEntry

# Built-in reward modules, imported on first lookup (they import numpy/torch-heavy domain code).
_BUILTIN_MODULES = (
    "rlpost.rewards.trajectory_quality",
    "rlpost.rewards.coc_consistency",
    "rlpost.rewards.critic",
)


@dataclass(frozen=True)
class RewardEntry:
    """A resolved reward: its name (as logged), the callable, its declared version and where it came from.

    ref: the string that resolves back to it in another process (a name or ``module:attr``).
    source: ``builtin`` | ``registered`` | ``entry_point`` | ``dotted``.
    is_async: True when calling ``fn`` returns an awaitable (``async def`` function or ``__call__``).
    """

    name: str
    fn: Callable[..., Any]
    version: str
    ref: str
    source: str
    is_async: bool
    description: str = ""
    default_params: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, RewardEntry] = {}
_builtins_loaded = False


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def register_reward(name: str, *, version: str = "1", default_params: dict[str, Any] | None = None):
    """Decorator: register ``fn`` under ``name`` with its ``version``; returns ``fn`` unchanged (plus metadata).

    Registering a different function under a taken name raises ``ValueError`` naming both, so two plugins cannot
    silently shadow each other. Re-registering the same function (module re-import) is allowed.
    """
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"register_reward: name must be a non-empty string without ':', got {name!r}")
    if not isinstance(version, str) or not version:
        raise ValueError(f"register_reward({name!r}): version must be a non-empty string, got {version!r}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(fn):
            raise TypeError(f"register_reward({name!r}): {fn!r} is not callable")
        module = getattr(fn, "__module__", None) or ""
        ref = f"{module}:{getattr(fn, '__qualname__', name)}"
        source = "builtin" if module.startswith("rlpost.rewards.") else "registered"
        doc = inspect.getdoc(fn) or ""
        entry = RewardEntry(name, fn, version, ref, source, _is_async(fn), doc.split("\n")[0],
                            dict(default_params or {}))
        old = _REGISTRY.get(name)
        if old is not None and old.ref != ref:
            raise ValueError(f"reward name {name!r} is already registered by {old.ref}; cannot register {ref}")
        _REGISTRY[name] = entry
        try:
            setattr(fn, _ATTR, entry)
        except AttributeError:  # e.g. a builtin or a class with __slots__: the registry still has it
            pass
        return fn

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _builtins_loaded = True


def _entry_from_callable(fn: Any, ref: str, source: str, name: str) -> RewardEntry:
    """Entry for a callable found by dotted path or entry point: its decoration's metadata if it has one."""
    if not callable(fn):
        raise TypeError(f"reward {ref!r}: {type(fn).__name__} object is not callable")
    declared = getattr(fn, _ATTR, None)
    if isinstance(declared, RewardEntry):
        # Keep the ref the caller used: it is what another process will resolve.
        return RewardEntry(declared.name, fn, declared.version, ref, source, declared.is_async,
                           declared.description, declared.default_params)
    version = getattr(fn, "reward_version", None) or getattr(fn, "version", None)
    version = version if isinstance(version, str) and version else UNVERSIONED
    doc = (inspect.getdoc(fn) or "").split("\n")[0]
    return RewardEntry(name, fn, version, ref, source, _is_async(fn), doc)


def _resolve_dotted(ref: str) -> RewardEntry:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise ValueError(f"reward {ref!r}: a dotted path must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"reward {ref!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AttributeError(f"reward {ref!r}: module {module_name!r} has no attribute {attr!r}") from None
    return _entry_from_callable(obj, ref, "dotted", attr.rsplit(".", 1)[-1])


def entry_point_rewards() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points of group ``rlpost.rewards``, by name (not loaded)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def resolve_reward(ref: str) -> RewardEntry:
    """Find a reward by built-in/registered name, entry-point name, or dotted path ``module:attr``.

    Raises ``KeyError`` for an unknown name (listing the known ones and how to add one), ``ImportError`` /
    ``AttributeError`` / ``TypeError`` for a dotted path that does not lead to a callable; messages name ``ref``.
    """
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"reward reference must be a non-empty string, got {ref!r}")
    if ":" in ref:
        return _resolve_dotted(ref)
    _load_builtins()
    if ref in _REGISTRY:
        return _REGISTRY[ref]
    eps = entry_point_rewards()
    if ref in eps:
        try:
            obj = eps[ref].load()
        except Exception as exc:
            raise ImportError(f"reward {ref!r}: entry point {eps[ref].value!r} failed to load: {exc}") from exc
        entry = _entry_from_callable(obj, eps[ref].value, "entry_point", ref)
        return RewardEntry(ref, entry.fn, entry.version, entry.ref, "entry_point", entry.is_async,
                           entry.description, entry.default_params)
    known = sorted(set(_REGISTRY) | set(eps))
    raise KeyError(
        f"unknown reward {ref!r}; known: {known}. Use a dotted path 'package.module:function', or declare an "
        f"entry point in group {ENTRY_POINT_GROUP!r}"
    )


def available_rewards() -> dict[str, str]:
    """Every reward name that ``resolve_reward`` knows without a dotted path -> its source."""
    _load_builtins()
    out = {name: entry.source for name, entry in _REGISTRY.items()}
    for name in entry_point_rewards():
        out.setdefault(name, "entry_point")
    return dict(sorted(out.items()))
