"""Config loading: YAML files plus dotted command-line overrides, validated by pydantic models.

    load_config(SomeModel, "configs/tiny.yaml", ["sft.lr=1e-4", "data.nets=[fkk_in,A10KW]"])

Overrides are parsed as YAML scalars/lists (so ``1e-4`` is a float, ``true`` a bool, ``[a,b]`` a list) and must
name existing fields: a typo is an error naming the key, never a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from rlpost.common.errors import UserError

Model = TypeVar("Model", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated. (Field names may start
    with ``model_``: ``model_type`` and friends are ordinary settings here.)"""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ConfigError(UserError, ValueError):
    """A config that cannot run; the message names the field and the fix."""


def apply_override(tree: dict, override: str) -> None:
    """Set ``a.b.c=value`` in a nested dict in place (value parsed as YAML)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r}: expected dotted.key=value")
    key, raw = override.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {override!r}: empty key segment in {key!r}")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def load_config(model: type[Model], path: str | Path | None = None, overrides: list[str] = (),
                sections: tuple[str, ...] | None = None) -> Model:
    """Read ``path`` (YAML; None = the model's defaults), apply ``overrides``, validate into ``model``.

    sections: the top-level keys this model reads (None: all); other sections of a shared run config are ignored,
    so `rlpost sft configs/tiny.yaml` can read only ``model``/``sft``/``eval`` of the root run config.
    """
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r}: top level must be a mapping, got {type(loaded).__name__}")
        tree = loaded or {}
    for override in overrides:
        apply_override(tree, override)
    if sections is not None:
        tree = {k: tree[k] for k in sections if k in tree}
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None


def format_validation_error(exc: ValidationError, path=None) -> str:
    """One line per problem: ``field.path: message (got value)``. A check across sections (a model validator)
    already names its fields in the message, so it is printed as it is."""
    where = f" in {path}" if path else ""
    lines = [f"invalid config{where}:"]
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {loc}: {msg}{got}" if loc else f"  {msg}")
    return "\n".join(lines)
