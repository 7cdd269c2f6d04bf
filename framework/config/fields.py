"""Config fields declared once, by a frozen settings dataclass.

A method's settings are one frozen dataclass whose fields are named exactly as their
config keys, each with its default and a comment, and which checks itself in
`__post_init__`. `declare` adds its fields to a model's ConfigDict (so that
`--config.model.<field>=...` overrides work, type-checked by ml_collections, and a
misspelt key stays an error); `build` constructs the dataclass from the finished config.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Iterable, TypeVar

import ml_collections

from framework.errors import ConfigError

S = TypeVar("S")


def _fields(settings_cls: type) -> tuple[dataclasses.Field, ...]:
    """The dataclass fields a constructor takes."""
    if not (isinstance(settings_cls, type) and dataclasses.is_dataclass(settings_cls)):
        raise TypeError(f"{settings_cls!r} is not a dataclass")
    return tuple(f for f in dataclasses.fields(settings_cls) if f.init)


def _check_names(settings_cls: type, names: Iterable[str], what: str) -> None:
    unknown = sorted(set(names) - {f.name for f in _fields(settings_cls)})
    if unknown:
        raise TypeError(f"{what} {unknown} are not fields of {settings_cls.__name__}")


def _default(settings_cls: type, field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(
        f"{settings_cls.__name__}.{field.name} has no default, so it cannot be a config field"
    )


def _value_type(hint: Any, name: str) -> type:
    """The class T of a field annotated `T` or `T | None` (placeholders need one)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"field {name!r}: a None default needs one other type, got {hint}")
        hint = args[0]
    hint = typing.get_origin(hint) or hint  # e.g. tuple[int, ...] -> tuple
    if hint is Any or not isinstance(hint, type):
        raise TypeError(f"field {name!r}: cannot declare a typed placeholder for {hint!r}")
    return hint


def _is_float(hint: Any) -> bool:
    """Whether a field is annotated `float` or `float | None`."""
    types_ = set(typing.get_args(hint)) if typing.get_origin(hint) else {hint}
    return float in types_ and types_ <= {float, type(None)}


def declare(
    config: ml_collections.ConfigDict, settings_cls: type, **default_overrides: Any
) -> None:
    """Adds every field of `settings_cls` to `config` with its default.

    `default_overrides` replace defaults (a model's own values); the resulting defaults
    are checked by constructing the settings once. A None default becomes a placeholder
    of the field's type, so that overrides of it are still type-checked.
    """
    _check_names(settings_cls, default_overrides, "default overrides")
    hints = typing.get_type_hints(settings_cls)
    values = {}
    for field in _fields(settings_cls):
        if field.name in config:
            raise ValueError(f"config already has a field {field.name!r}")
        if field.name in default_overrides:
            values[field.name] = default_overrides[field.name]
        else:
            values[field.name] = _default(settings_cls, field)
    settings_cls(**values)  # the defaults check themselves
    entries = {
        name: ml_collections.config_dict.placeholder(_value_type(hints[name], name))
        if value is None
        else value
        for name, value in values.items()
    }
    for name, value in entries.items():
        config[name] = value


def build(settings_cls: type[S], config: ml_collections.ConfigDict, **extra: Any) -> S:
    """`settings_cls` from the fields of `config` (which may hold other keys too).

    Fields that `config` lacks keep their defaults; `extra` gives or replaces field
    values. Integers become floats in float fields, as in a type-safe ConfigDict.
    """
    _check_names(settings_cls, extra, "extra values")
    hints = typing.get_type_hints(settings_cls)
    kwargs = {}
    for field in _fields(settings_cls):
        if field.name in extra:
            value = extra[field.name]
        elif field.name in config:
            value = config[field.name]
        else:
            continue
        if _is_float(hints[field.name]) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[field.name] = value
    return settings_cls(**kwargs)


def check_one_of(key: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raises ConfigError naming `key` unless `value` is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")


def check_positive(key: str, value: Any) -> None:
    """Raises ConfigError naming `key` unless `value` > 0."""
    if not value > 0:
        raise ConfigError(f"{key} must be positive, got {value}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_non_negative(key: str, value: Any) -> None:
    """Raises ConfigError naming `key` unless `value` is a finite number >= 0."""
    if not (_is_number(value) and math.isfinite(value) and value >= 0):
        raise ConfigError(f"{key} must be a finite number >= 0, got {value}")


def check_rate(key: str, value: Any) -> None:
    """Raises ConfigError naming `key` unless 0 <= `value` < 1 (a dropout or smoothing rate)."""
    if not (_is_number(value) and 0 <= value < 1):
        raise ConfigError(f"{key} must lie in [0, 1), got {value}")
