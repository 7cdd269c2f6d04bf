"""Name -> code registries: models, datasets, trainers, tables, evaluators, benchmarks.

Configs select code by name (`config.model_name`, `config.dataset_name`,
`config.trainer_name`, `config.evals.*.type`); an unknown name is a one-line error
listing the known ones.

Entries register themselves with a decorator when their module is imported. Which module
that is, each registering package says without importing it, in a manifest
`REGISTERED = {kind: {name: module}}` in its `__init__.py` (the core's
`framework.data`, `.models`, `.train`; each project's package, found through the Python
entry point group `PROJECTS_ENTRY_POINTS`, see `setup.py`). So a lookup imports only
the module of the name asked for, as big_vision imports a model by its module name
(a parity run does not load TensorFlow's image stack), the core names no project, and an
installed project elsewhere plugs in without changing it. A name missing from the
manifests is still found by importing every registering module (`import_all`), as is
the list of known names in an error.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from typing import Any, Callable, Generic, TypeVar

from framework.errors import ConfigError

T = TypeVar("T")

# The core's registering packages (each with a `REGISTERED` manifest).
_CORE_PACKAGES = ("framework.data", "framework.models", "framework.train")
# Entry point group naming each project's registering package (`name = package`).
PROJECTS_ENTRY_POINTS = "adaptive_compute.projects"


class Registry(Generic[T]):
    """A named table of constructors."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice.")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            module = manifest().get(self.kind, {}).get(name)
            if module is not None:
                importlib.import_module(module)
        if name not in self._entries:
            import_all()
        if name not in self._entries:
            hint = ""
            if not project_packages():
                hint = (
                    f" (no project is registered: install this checkout, `pip install -e .`, "
                    f"so that its {PROJECTS_ENTRY_POINTS!r} entry points exist)"
                )
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}{hint}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        import_all()
        return sorted(self._entries)


@functools.cache
def project_packages() -> tuple[str, ...]:
    """The registering packages that installed projects declare as entry points."""
    entry_points = importlib.metadata.entry_points(group=PROJECTS_ENTRY_POINTS)
    return tuple(sorted(entry_point.value for entry_point in entry_points))


MANIFEST = "REGISTERED"


@functools.cache
def manifest() -> dict[str, dict[str, str]]:
    """kind -> {name: module}, from the core's and every installed project's manifest."""
    merged: dict[str, dict[str, str]] = {}
    for package in _CORE_PACKAGES + project_packages():
        declared = getattr(importlib.import_module(package), MANIFEST, {})
        for kind, entries in declared.items():
            merged.setdefault(kind, {}).update(entries)
    return merged


def import_all() -> None:
    """Imports every module the manifests name (and the registering packages)."""
    for entries in manifest().values():
        for module in entries.values():
            importlib.import_module(module)


MODELS: Registry[Any] = Registry("model")
DATASETS: Registry[Any] = Registry("dataset")
TRAINERS: Registry[Any] = Registry("trainer")
TABLES: Registry[Any] = Registry("table")
# config.evals entries select evaluators by `type` (framework/train/evaluators).
EVALUATORS: Registry[Any] = Registry("evaluator")
# `launch.benchmark --mode=NAME`: projects register their own comparisons.
BENCHMARKS: Registry[Any] = Registry("benchmark mode")
# The `scale` table's rows: projects register `preset -> list[ScaleRow]`.
SCALE_ROWS: Registry[Any] = Registry("scale rows")
