"""Evaluators chosen by config: `config.evals`, name -> entry (type, split, cadence, own fields).

The trainer and `launch.evaluate` build the same list with `from_config` and run it with
`run`, which merges every evaluator's metrics into one row (the trainer's `eval` split,
launch.evaluate's `evaluate`). The core registers `metrics` (the default: the model's
metrics over the eval split) and `decoding` (text tasks: decode, score, keep the
decodes); projects register their own (AdaTape's `tape_selection`). How config files
add entries: `framework.config.schema` (`add_eval`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ml_collections

from framework.config import registry
from framework.train.evaluators.base import Context, Evaluator, Result

if TYPE_CHECKING:
    from framework.train.experiment import Experiment

__all__ = ["Context", "Evaluator", "Result", "build", "from_config", "run"]


def build(name: str, entry: ml_collections.ConfigDict, context: Context) -> Evaluator:
    """The evaluator of one resolved `config.evals` entry."""
    return registry.EVALUATORS.get(entry.type)(name, entry, context)


def from_config(experiment: "Experiment", workdir: str, suffix: str = "") -> list[Evaluator]:
    """The evaluators of `experiment.config.evals` (resolved), in name order."""
    context = Context(experiment, workdir, suffix)
    return [build(name, entry, context) for name, entry in experiment.config.evals.items()]


def run(evaluators: list[Evaluator], params: Any, step: int) -> Result:
    """Runs `evaluators` on `params`; their metrics merged into one Result."""
    merged = Result()
    for evaluator in evaluators:
        result = evaluator.run(params, step)
        merged.scalars.update(result.scalars)
        merged.histograms.update(result.histograms)
    return merged
