"""The `metrics` evaluator: the model's metrics over a split through the trainer's eval step.

The default `config.evals` entry (`metrics`, the dataset's eval split): loss, accuracy
and every auxiliary metric and histogram the model returns, each real example counted
once (`framework.train.metric_sums`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
from jax.sharding import Mesh

from framework.config import registry
from framework.data import pipeline
from framework.train import device_io, metric_sums
from framework.train.evaluators import base


def evaluate(
    eval_step: Callable, params: Any, batches: Iterator[pipeline.Batch], mesh: Mesh
) -> base.Result:
    """Metric ratios over `batches` (each real example once), and the histogram values of
    the real examples."""
    totals: dict[str, np.ndarray] = {}
    histograms: dict[str, list[np.ndarray]] = {}
    for batch in device_io.prefetch(batches, mesh):
        sums, hist, mask = device_io.to_host(eval_step(params, batch))
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)
        mask = mask > 0
        for k, v in hist.items():
            histograms.setdefault(k, []).append(np.asarray(v)[mask])
    return base.Result(
        metric_sums.ratios(totals), {k: np.concatenate(v) for k, v in histograms.items()}
    )


@registry.EVALUATORS.register("metrics")
class Metrics(base.Evaluator):
    """The model's own metrics (the trainer's eval step) over this entry's split."""

    def evaluate(self, params: Any, step: int) -> base.Result:
        context = self.context
        return evaluate(context.eval_step, params, self.eval_batches(), context.experiment.mesh)
