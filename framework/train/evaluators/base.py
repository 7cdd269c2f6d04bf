"""The evaluator contract: one `config.evals` entry, built once per run, run on params.

An entry holds the fields every evaluator has (`schema.EVAL_COMMON_FIELDS`: `type`,
`split`, `every_steps`) and its type's own (`default_config()`), checked by `schema.resolve`
(`check_config`). An evaluator returns scalars (and optional histograms) under its own
metric names; `run` prefixes them with `<name>/` when the entry reads another split than
the dataset's configured eval split, so that the default evaluators keep the names runs
have always written (`accuracy`, `polarity/accuracy`) and a second split cannot clash.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Callable, Iterator

import ml_collections
import numpy as np

from framework.data import pipeline
from framework.errors import ConfigError

if TYPE_CHECKING:  # the trainer builds evaluators; they only read its Experiment
    from framework.train.experiment import Experiment


@dataclasses.dataclass
class Result:
    """What an evaluation gives: scalars for metrics.jsonl and TensorBoard, and
    histograms (value arrays) for TensorBoard only."""

    scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    histograms: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def prefixed(self, prefix: str) -> "Result":
        return Result(
            {prefix + k: v for k, v in self.scalars.items()},
            {prefix + k: v for k, v in self.histograms.items()},
        )


@dataclasses.dataclass
class Context:
    """What a run's evaluators share: the built experiment, where files go, and one
    jitted eval step. `suffix` tags files written beside the run's own (launch.evaluate
    writes `.evaluate`)."""

    experiment: "Experiment"
    workdir: str
    suffix: str = ""

    @functools.cached_property
    def eval_step(self) -> Callable:
        return self.experiment.jit_eval_step()


class Evaluator:
    """Base class of registered evaluators (`registry.EVALUATORS`, by `config.evals.*.type`).

    Subclasses give `default_config()` (their own fields), `check_config()` and
    `evaluate(params, step) -> Result`; a dataset they cannot evaluate is a ConfigError
    on construction, before training starts.
    """

    def __init__(self, name: str, config: ml_collections.ConfigDict, context: Context):
        self.name = name
        self.config = config
        self.context = context
        self.where = f"config.evals.{name}"
        # Metrics of the configured eval split keep their plain names; another split's
        # carry the entry's name.
        self.prefix = f"{name}/" if config.split else ""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        """The type's own fields with their defaults (beside `schema.EVAL_COMMON_FIELDS`)."""
        return ml_collections.ConfigDict()

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict, where: str) -> None:
        """Raises ConfigError naming `<where>.<key>` for a bad value of the type's own."""

    @property
    def dataset(self) -> pipeline.DatasetBuilder:
        return self.context.experiment.dataset

    def split_kwargs(self) -> dict[str, Any]:
        """`{"split": ...}` for a named split; nothing for the dataset's eval split."""
        return {"split": self.config.split} if self.config.split else {}

    def eval_batches(self) -> Iterator[pipeline.Batch]:
        """Host-local batches of this entry's split, padded, with `mask`."""
        return self.dataset.eval_batches(**self.split_kwargs())

    def every_steps(self) -> int:
        return self.config.every_steps or self.context.experiment.config.eval_every_steps

    def due(self, step: int, is_last: bool) -> bool:
        every = self.every_steps()
        return is_last or bool(every and step % every == 0)

    def evaluate(self, params: Any, step: int) -> Result:
        raise NotImplementedError

    def run(self, params: Any, step: int) -> Result:
        """`evaluate` with this entry's metric names (see the module docstring)."""
        return self.evaluate(params, step).prefixed(self.prefix)


def require(dataset: Any, attributes: tuple[str, ...], where: str, needs: str) -> None:
    """A one-line ConfigError unless `dataset` has every one of `attributes`."""
    missing = [a for a in attributes if not hasattr(dataset, a)]
    if missing:
        raise ConfigError(
            f"{where} needs {needs}; {type(dataset).__name__} has no {', '.join(missing)}"
        )
