"""Config-typed registries: the policy losses and advantage estimators a run config selects by ``name``.

Each entry is a ``StrictModel`` subclass that is at once its config (a ``name: Literal["..."]`` field plus its own
described fields) and its behaviour (methods). A package registers its entries with ``@REGISTRY.register`` and
imports all of its modules with ``discover`` at import, so adding an entry is one new module and no other edit.
``REGISTRY.config_type()`` is the pydantic field type that dispatches a mapping on ``name`` to the registered class
at validation time (not at class definition), so an entry registered later, e.g. in a user's module, validates too,
and the class's own errors keep their location (``learner.loss.eps_low``). ``name: "pkg.mod:Class"`` imports a
module that is not in the package, which registers itself by importing.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from typing import Annotated, Any, Generic, TypeVar

from pydantic import PlainValidator, SerializeAsAny, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from rlpost.common.config import StrictModel

Entry = TypeVar("Entry", bound=StrictModel)


def _literal_name(cls: type) -> str:
    """The one value of ``cls``'s ``name: Literal["..."]`` field, which must also be its default."""
    field = cls.model_fields.get("name")
    args = typing.get_args(field.annotation) if field is not None else ()
    if field is None or typing.get_origin(field.annotation) is not typing.Literal or len(args) != 1:
        raise TypeError(f"{cls.__qualname__}: needs a field name: Literal['...'] with exactly one value")
    if field.default != args[0]:
        raise TypeError(f"{cls.__qualname__}.name: default must be {args[0]!r}, the Literal's value")
    return args[0]


class Registry(Generic[Entry]):
    """Named ``StrictModel`` subclasses of ``base``; ``kind`` names them in errors ("policy loss")."""

    def __init__(self, kind: str, base: type[Entry]):
        self.kind, self.base = kind, base
        self.entries: dict[str, type[Entry]] = {}

    def register(self, cls: type[Entry]) -> type[Entry]:
        """Class decorator: add ``cls`` under its ``name`` Literal. Every field needs a description (the config
        is the documentation) and names are unique."""
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r}: a registered {self.kind} must subclass {self.base.__qualname__}")
        if inspect.isabstract(cls):
            raise TypeError(f"{cls.__qualname__}: implement {sorted(cls.__abstractmethods__)} to register it")
        name = _literal_name(cls)
        if name in self.entries and self.entries[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is already registered by {self.entries[name].__module__}")
        undocumented = [f for f, info in cls.model_fields.items() if f != "name" and not info.description]
        if undocumented:
            raise TypeError(f"{cls.__qualname__}: fields {undocumented} need a one-line description")
        self.entries[name] = cls
        return cls

    def discover(self, package: str) -> None:
        """Import every module of ``package`` (each registers its entries by importing)."""
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__, prefix=f"{package}."):
            importlib.import_module(info.name)

    def resolve(self, name: str) -> type[Entry]:
        """The class registered under ``name``, or the one a ``pkg.mod:Class`` path names (imported here)."""
        if ":" in name:
            module, _, attr = name.partition(":")
            try:
                cls = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise ValueError(f"cannot import {self.kind} {name!r}: {exc}") from None
            return self.register(cls)
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; registered: {sorted(self.entries)}, "
                             "or give a 'pkg.module:Class' path")
        return self.entries[name]

    def build(self, name: str, **fields: Any) -> Entry:
        cls = self.resolve(name)
        return cls.model_validate({**fields, "name": _literal_name(cls)})

    def config_type(self, default: str) -> Any:
        """Field type for a config section ``{name: ..., <that entry's fields>}``; a missing name is ``default``."""

        def validate(value: Any) -> Entry:
            if isinstance(value, self.base):
                return value
            if not isinstance(value, dict):
                raise ValueError(f"expected a mapping with a 'name' ({self.kind}), got {type(value).__name__}")
            name = value.get("name", default)
            try:
                if not isinstance(name, str):
                    raise ValueError(f"expected a {self.kind} name, got {type(name).__name__}")
                cls = self.resolve(name)
            except (ValueError, TypeError) as exc:
                # Located at `<section>.name`, so the message names the field to fix.
                raise ValidationError.from_exception_data(self.kind, [InitErrorDetails(
                    type=PydanticCustomError("registry_name", "{problem}", {"problem": str(exc)}),
                    loc=("name",), input=name)]) from None
            return cls.model_validate({**value, "name": _literal_name(cls)})

        return Annotated[SerializeAsAny[self.base], PlainValidator(validate)]
