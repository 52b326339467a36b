"""Critic backends of ``reasoning_critic``: the request/grade types, the backend protocol and its registry.

A backend registers by decorator (``@register_critic_backend("rubric")``) or by an entry point in the
``rlpost.critic_backends`` group, loaded on first use (the project's judge, ``rlpost.judge.critic``, is one: it
sits above the rewards layer, so the reward finds it without importing it).
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

MAX_GRADE = 5


@dataclass(frozen=True, slots=True)
class CritiqueRequest:
    """What a critic grades: the generated trace against the scenario's ground-truth trace (text only,
    docs/design.md §5.1)."""

    scenario_id: str
    trace: str
    reference: str


@dataclass(frozen=True, slots=True)
class CritiqueGrade:
    """A critic's verdict on one request.

    grade: integer 0–5 (None unless status is ok/unparseable); status: ok | unparseable (grade 0: the generated trace
    has no usable decision, or a judge's output is not a grade: ``details["unparseable"] == "judge_output"``) |
    timeout (the critic's own request for this sample timed out: counted per step, like a deadline) |
    error (the critic could not grade: e.g. the reference does not parse, the judge is unreachable); rationale: one
    or two sentences saying why (the judge's teacher signal); details: small JSON-serialisable diagnostics.
    """

    grade: int | None
    status: Literal["ok", "unparseable", "timeout", "error"] = "ok"
    rationale: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class CriticBackend(Protocol):
    """A grader: ``grade(requests)`` returns one ``CritiqueGrade`` per request, in order (or an awaitable of it).

    Must not raise for a bad *sample* (return status unparseable/error for it); a raise fails the whole batch
    (status error for each sample, with the message). ``name``/``version`` are set by the registration.
    """

    name: str
    version: str

    def grade(self, requests: Sequence[CritiqueRequest]) -> Any: ...


_BACKENDS: dict[str, tuple[Callable[..., CriticBackend], str]] = {}
_INSTANCES: dict[tuple[str, str], CriticBackend] = {}  # (backend, options as JSON): built once per process


def register_critic_backend(name: str, *, version: str = "1"):
    """Decorator: register a backend factory (a class or function taking keyword options) under ``name``."""

    def decorate(factory: Callable[..., CriticBackend]) -> Callable[..., CriticBackend]:
        old = _BACKENDS.get(name)
        if old is not None and old[0].__qualname__ != factory.__qualname__:
            raise ValueError(f"critic backend {name!r} is already registered by {old[0].__qualname__}")
        _BACKENDS[name] = (factory, version)
        return factory

    return decorate


BACKEND_ENTRY_POINTS = "rlpost.critic_backends"


def _load_entry_point_backend(name: str) -> None:
    """Import the module behind the entry point ``name`` of group ``rlpost.critic_backends`` (the project's judge is
    one), which registers the backend by its decorator."""
    for ep in importlib.metadata.entry_points(group=BACKEND_ENTRY_POINTS, name=name):
        ep.load()


def critic_backend_factory(name: str) -> tuple[Callable[..., CriticBackend], str]:
    """The factory and version registered under ``name`` (loading its entry point on first use), not built.

    Raises ``KeyError`` naming the known backends for an unknown name.
    """
    if name not in _BACKENDS:
        _load_entry_point_backend(name)
    if name not in _BACKENDS:
        raise KeyError(f"unknown critic backend {name!r}; known: {sorted(_BACKENDS)} and entry points "
                       f"{sorted(ep.name for ep in importlib.metadata.entry_points(group=BACKEND_ENTRY_POINTS))}")
    return _BACKENDS[name]


def get_critic_backend(name: str, **options: Any) -> CriticBackend:
    """The backend ``name`` built with ``options`` (cached per process: a judge client is built once). Backends
    register by decorator, or by an entry point in the ``rlpost.critic_backends`` group (loaded on first use).

    Raises ``KeyError`` naming the known backends for an unknown name.
    """
    factory, version = critic_backend_factory(name)
    key = (name, json.dumps(options, sort_keys=True, default=repr))
    if key not in _INSTANCES:
        backend = factory(**options)
        backend.name, backend.version = name, version
        _INSTANCES[key] = backend
    return _INSTANCES[key]
