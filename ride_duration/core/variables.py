"""Settings fields read from environment variables: declared with `variable`, parsed by type.

A value that does not parse is a one-line ConfigurationError naming the variable.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol, TypeVar

from ride_duration.core.errors import ConfigurationError


class Dataclass(Protocol):
    """A dataclass instance: what `dataclasses.fields` reads."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


SettingsGroup = TypeVar("SettingsGroup", bound=Dataclass)


def variable(
    name: str,
    default: Any,
    meaning: str,
    *,
    minimum: int | None = None,
    maximum: float | None = None,
    shown: str | None = None,
) -> Any:
    """A settings field read from the environment variable `name` (blank counts as unset).

    `meaning` is its line in the documentation's configuration table; `shown` words a default
    that is computed rather than fixed; a number must lie between `minimum` and `maximum`.
    """
    metadata = {
        "variable": name,
        "minimum": minimum,
        "maximum": maximum,
        "meaning": meaning,
        "shown": shown,
    }
    return dataclasses.field(default=default, metadata=metadata)


def variables(kind: type) -> dict[str, dataclasses.Field[Any]]:
    """Every environment variable the settings read, and the field that holds it."""
    found: dict[str, dataclasses.Field[Any]] = {}
    hints = typing.get_type_hints(kind)
    for field in dataclasses.fields(kind):
        if "variable" in field.metadata:
            found[field.metadata["variable"]] = field
        elif dataclasses.is_dataclass(hints[field.name]):
            found |= variables(hints[field.name])
    return found


def read_variables(kind: type[SettingsGroup], env: Mapping[str, str]) -> SettingsGroup:
    """An instance of the settings dataclass `kind`, each field from its variable."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(kind)
    for field in dataclasses.fields(kind):
        hint = hints[field.name]
        if "variable" not in field.metadata:
            values[field.name] = read_variables(hint, env)  # a nested group of settings
            continue
        name = field.metadata["variable"]
        raw = env.get(name, "").strip()
        if raw:
            value = _parse(name, raw, hint, field.metadata["minimum"])
            maximum = field.metadata.get("maximum")
            if maximum is not None and value is not None and value > maximum:
                raise ConfigurationError(f"{name} must be at most {maximum:g}, got {raw!r}")
            values[field.name] = value
    return kind(**values)


def _parse(name: str, raw: str, hint: Any, minimum: int | None) -> Any:
    """The value of variable `name` as the field's type, or a one-line ConfigurationError."""
    optional = _is_optional(hint)
    kind = _without_none(hint)
    if typing.get_origin(kind) is Literal:
        choices = typing.get_args(kind)
        if raw not in choices:
            allowed = " or ".join(repr(choice) for choice in choices)
            raise ConfigurationError(f"{name} must be {allowed}, got {raw!r}")
        return raw
    if kind is bool:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigurationError(f"{name} must be True or False, got {raw!r}")
        return raw.lower() in ("true", "1", "yes")
    if kind is int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigurationError(f"{name} must be at least {minimum}, got {value}")
        return value
    if kind is float:
        if optional and raw.lower() == "none":
            return None
        try:
            number = float(raw)
        except ValueError:
            raise ConfigurationError(f"{name} must be a number or 'none', got {raw!r}") from None
        if not number >= 0:
            raise ConfigurationError(f"{name} must be 0 or more, got {raw!r}")
        return number
    if typing.get_origin(kind) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _is_optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def _without_none(hint: Any) -> Any:
    if not _is_optional(hint):
        return hint
    [kind] = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    return kind
