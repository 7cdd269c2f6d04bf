"""Sweep definitions, Scenic style: a config file's `get_hyper(hyper)` returns a sweep.

A sweep is a list of points; a point is an ordered `{"config.a.b": value}` of overrides
applied to the file's config (its `:arg` preset included). The building blocks:

  hyper.sweep("config.lr.base", [1e-3, 3e-4])     one point per value
  hyper.fixed("config.num_train_steps", 2000)     one point, the same in every product
  hyper.product([s1, s2, ...])                    every combination (s1 varies slowest)
  hyper.zip([s1, s2, ...])                        the i-th points together (equal lengths)
  hyper.chainit([s1, s2, ...])                    one sweep after the other

e.g. `hyper.product([hyper.sweep("config.model.num_layers", [2, 3]),
hyper.sweep("config.lr.base", [0.5, 1.0])])` is four points. Values set by `fixed` are
part of every point's config but not of its name or of the sweep table's columns.
"""

from __future__ import annotations

import builtins
import dataclasses
import itertools
from typing import Any, Iterable, Sequence

from framework.errors import ConfigError

PREFIX = "config."


@dataclasses.dataclass(frozen=True)
class Point:
    """One run of a sweep: its overrides (in definition order) and which are fixed."""

    overrides: tuple[tuple[str, Any], ...]
    fixed: frozenset[str] = frozenset()

    @property
    def as_dict(self) -> dict[str, Any]:
        return dict(self.overrides)

    @property
    def swept(self) -> tuple[tuple[str, Any], ...]:
        """The overrides that name the point (all but the fixed ones)."""
        return tuple((k, v) for k, v in self.overrides if k not in self.fixed)

    def describe(self) -> str:
        """`lr.base=0.001, model.k=2` (for messages)."""
        shown = self.swept or self.overrides
        return ", ".join(f"{k.removeprefix(PREFIX)}={v!r}" for k, v in shown) or "(no overrides)"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key.startswith(PREFIX) or key == PREFIX:
        raise ConfigError(f"sweep key {key!r} must name a config field, e.g. 'config.lr.base'")


def sweep(key: str, values: Iterable[Any]) -> list[Point]:
    """One point per value of `key`."""
    _check_key(key)
    values = list(values)
    if not values:
        raise ConfigError(f"hyper.sweep({key!r}, ...) has no values")
    return [Point(((key, v),)) for v in values]


def fixed(key: str, value: Any) -> list[Point]:
    """A single point setting `key` to `value`, left out of the points' names."""
    _check_key(key)
    return [Point(((key, value),), frozenset({key}))]


def _merge(points: Sequence[Point], how: str) -> Point:
    overrides: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for point in points:
        for key, value in point.overrides:
            if key in seen:
                raise ConfigError(f"hyper.{how}: {key} is set by more than one of its sweeps")
            seen.add(key)
            overrides.append((key, value))
    return Point(tuple(overrides), frozenset().union(*(p.fixed for p in points)))


def product(sweeps: Sequence[Sequence[Point]]) -> list[Point]:
    """Every combination of one point from each sweep; the first varies slowest."""
    return [_merge(combo, "product") for combo in itertools.product(*map(_as_points, sweeps))]


def zip(sweeps: Sequence[Sequence[Point]]) -> list[Point]:  # noqa: A001 (Scenic's name)
    """The i-th points of all sweeps together; the sweeps must have one length."""
    sweeps = [_as_points(s) for s in sweeps]
    lengths = sorted({len(s) for s in sweeps})
    if len(lengths) > 1:
        raise ConfigError(f"hyper.zip needs sweeps of one length, got lengths {lengths}")
    return [_merge(combo, "zip") for combo in builtins.zip(*sweeps)]


def chainit(sweeps: Sequence[Sequence[Point]]) -> list[Point]:
    """The sweeps one after another."""
    return [point for s in sweeps for point in _as_points(s)]


def _as_points(value: Any) -> list[Point]:
    """A sweep given as points, or by hand as a list of `{"config.x": v}` dicts."""
    if isinstance(value, Point):
        return [value]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"a sweep is a list of points (from hyper.sweep/product/...), got "
            f"{type(value).__name__}"
        )
    points = []
    for item in value:
        if isinstance(item, Point):
            points.append(item)
        elif isinstance(item, dict):
            for key in item:
                _check_key(key)
            points.append(Point(tuple(item.items())))
        else:
            raise ConfigError(f"a sweep point must be a dict of overrides, got {item!r}")
    return points


def points(value: Any) -> list[Point]:
    """What `get_hyper` returned, as a checked list of points (no point twice)."""
    result = _as_points(value)
    if not result:
        raise ConfigError("get_hyper returned an empty sweep")
    first_seen: dict[tuple, int] = {}
    for index, point in enumerate(result):
        key = tuple(sorted((k, repr(v)) for k, v in point.overrides))
        if key in first_seen:
            raise ConfigError(
                f"sweep points {first_seen[key] + 1} and {index + 1} are the same "
                f"({point.describe()})"
            )
        first_seen[key] = index
    return result
