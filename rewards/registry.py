"""Where reward functions come from: built-ins by name, plugins by dotted path or by entry point.

    @register_reward("lane_bonus", version="2")
    def lane_bonus(completions, scenarios, /, *, bonus=0.1): ...

    resolve_reward("trajectory_quality")      # a built-in
    resolve_reward("mypkg.rewards:lane_bonus") # a dotted path ("module:attribute", attribute may be dotted)
    resolve_reward("lane_bonus")              # an entry point of group "rlpost.rewards" named lane_bonus

Params are checked before a run starts (``param_problems``): every key of a component's ``params`` must name a
keyword parameter of the function (required ones must be given). A function taking ``**options`` accepts any extra
key, unless it declares how those are checked (``register_reward(..., check_options=...)``; ``reasoning_critic``
binds them against its backend's options).

The version string is part of every cache key and every logged component record: bump it whenever the function's
output for the same input changes. A function that declares none gets ``UNVERSIONED`` and cannot be cached.
"""

from __future__ import annotations

import difflib
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
    check_options: OptionsChecker | None = None


@dataclass(frozen=True)
class ParamProblem:
    """Why one key of a component's params cannot be used: ``key`` (as written in ``params``) and the message."""

    key: str
    message: str


# check_options(options, bound) -> problems: options are the params that no named parameter takes (they go to
# ``**options``); bound is every named parameter's value (given, else its default), e.g. the critic's backend.
OptionsChecker = Callable[[dict[str, Any], dict[str, Any]], list[ParamProblem]]


_REGISTRY: dict[str, RewardEntry] = {}
_builtins_loaded = False


def _is_async(fn: Any) -> bool:
    # getattr fetches the __call__ method itself (an instance with ``async def __call__``), not a callable() test.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def register_reward(name: str, *, version: str = "1", default_params: dict[str, Any] | None = None,
                    check_options: OptionsChecker | None = None):
    """Decorator: register ``fn`` under ``name`` with its ``version``; returns ``fn`` unchanged (plus metadata).

    check_options: for a function with ``**options``, how the extra params are checked before a run (see
    ``OptionsChecker``); without one, any extra key is accepted.

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
                            dict(default_params or {}), check_options)
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
                           declared.description, declared.default_params, declared.check_options)
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
                           entry.description, entry.default_params, entry.check_options)
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


# Annotations whose values are cheap to check before a run (YAML gives "2.0" as a string if quoted).
_SIMPLE_TYPES = {"float": (float, int), "int": (int,), "bool": (bool,), "str": (str,)}


def _type_problem(param: inspect.Parameter, value: Any, owner: str) -> str | None:
    annotation = param.annotation
    if annotation in (float, int, bool, str):
        annotation = annotation.__name__
    expected = _SIMPLE_TYPES.get(annotation) if isinstance(annotation, str) else None
    if expected is None:  # anything richer than the simple types is left to the function
        return None
    if (isinstance(value, bool) and annotation != "bool") or not isinstance(value, expected):
        return f"{owner} expects {annotation} for {param.name!r}, got {type(value).__name__} {value!r}"
    return None


def bind_keywords(fn: Callable[..., Any], params: dict[str, Any], *, owner: str, skip_positional: int = 0
                  ) -> tuple[list[ParamProblem], dict[str, Any], dict[str, Any]]:
    """Bind ``params`` as keyword arguments of ``fn`` (a function, or a class: its constructor).

    skip_positional: leading positional parameters filled by the caller (a reward's ``completions, scenarios``).
    Returns (problems, options: the keys only ``**kwargs`` takes, bound: every named parameter's value, given or
    default). An unknown key, a missing required one or a value of the wrong simple type (float/int/bool/str
    annotations) is a problem; messages name ``owner``, list the accepted keys and suggest the closest one.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no introspectable signature (e.g. a C builtin): nothing can be checked
        return [], {}, dict(params)
    named: dict[str, inspect.Parameter] = {}
    var_keyword = False
    skipped = 0
    for p in signature.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and skipped < skip_positional:
            skipped += 1
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            named[p.name] = p
        elif p.kind == p.VAR_KEYWORD:
            var_keyword = True
    problems, options = [], {}
    bound = {name: p.default for name, p in named.items() if p.default is not p.empty}
    for key, value in params.items():
        if key in named:
            bound[key] = value
            wrong = _type_problem(named[key], value, owner)
            if wrong:
                problems.append(ParamProblem(key, wrong))
        elif var_keyword:
            options[key] = value
        else:
            close = difflib.get_close_matches(str(key), list(named), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(ParamProblem(str(key),
                                         f"{owner} has no parameter {key!r}; accepted: {sorted(named)}{hint}"))
    for name, p in named.items():
        if p.default is p.empty and name not in params:
            problems.append(ParamProblem(name, f"{owner} requires {name!r}; add it to params"))
    return problems, options, bound


def param_problems(entry: RewardEntry, params: dict[str, Any]) -> list[ParamProblem]:
    """What is wrong with calling ``entry`` with ``params`` (its ``default_params`` first), without calling it:
    each key must name one of its keyword parameters; keys that only ``**options`` takes go to the entry's
    ``check_options`` when it declares one (called even without any, to check e.g. the critic's backend name),
    else are accepted as they are."""
    merged = dict(entry.default_params) | dict(params)
    problems, options, bound = bind_keywords(entry.fn, merged, owner=f"reward {entry.name!r}", skip_positional=2)
    if entry.check_options is not None:
        problems += entry.check_options(options, bound)
    return problems
