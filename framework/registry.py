"""Name -> code registries for models, datasets and trainers.

Configs select code by name (`config.model_name`, `config.dataset_name`,
`config.trainer_name`); an unknown name is a one-line error listing the known ones.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, TypeVar

from framework.errors import ConfigError

T = TypeVar("T")

# Packages whose import registers every model, dataset and trainer in the project.
_REGISTERING_PACKAGES = (
    "framework.data",
    "framework.models",
    "framework.train",
    "projects.adatape",
    "projects.altup",
    "projects.baselines",
)


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
        import_all()
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._entries))}"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        import_all()
        return sorted(self._entries)


def import_all() -> None:
    """Imports every registering package once (missing optional ones are skipped)."""
    for package in _REGISTERING_PACKAGES:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as e:
            if e.name != package:
                raise


MODELS: Registry[Any] = Registry("model")
DATASETS: Registry[Any] = Registry("dataset")
TRAINERS: Registry[Any] = Registry("trainer")
TABLES: Registry[Any] = Registry("table")
