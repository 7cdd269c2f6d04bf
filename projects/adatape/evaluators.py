"""AdaTape's `tape_selection` evaluator: how often Adaptive Tape Reading reads each bank entry.

Over a split, it counts for every bank entry the examples whose tape read it (an
example counts an entry at most once). As a `config.evals` entry it writes
`bank_reads_per_example` (the mean number of entries an example reads) and the
histogram `bank_read_frequency` (per entry, the fraction of examples reading it);
`counts` gives the raw counts, from which the images table draws its heatmap
(`image_plots.selection_heatmap`). The model must hold an `AdaptiveTapeReading` (the
first one's readings are counted).

  schema.add_eval(config, "selection", "tape_selection")
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from framework.config import registry
from framework.errors import ConfigError
from framework.models import base as models_base
from framework.train import device_io
from framework.train.evaluators import base
from projects.adatape import atr


@registry.EVALUATORS.register("tape_selection")
class TapeSelection(base.Evaluator):
    """Per bank entry, the examples of this entry's split whose tape read it."""

    def __init__(self, name: str, config: Any, context: base.Context):
        super().__init__(name, config, context)
        self._step = self._count_step()
        experiment = context.experiment  # traced now: a model without ATR fails here
        jax.eval_shape(self._step, experiment.abstract_state.params, experiment.abstract_batch)

    def counts(self, params: Any) -> tuple[np.ndarray, int]:
        """(reads per bank entry, number of real examples) over the split."""
        counts, examples = None, 0
        for batch in device_io.prefetch(self.eval_batches(), self.context.experiment.mesh):
            used, real = device_io.to_host(self._step(params, batch))
            counts = used if counts is None else counts + used
            examples += int(real)
        return counts, examples

    def evaluate(self, params: Any, step: int) -> base.Result:
        counts, examples = self.counts(params)
        frequency = counts / max(examples, 1)
        return base.Result(
            {"bank_reads_per_example": float(frequency.sum())},
            {"bank_read_frequency": frequency},
        )

    def _count_step(self) -> Callable:
        """`(params, batch) -> (reads per entry, real examples)`, summed on the devices."""
        experiment, where = self.context.experiment, self.where
        model = experiment.model

        def count(params, batch):
            _, state = model.module.apply(
                {"params": params},
                **model.module_inputs(batch),
                train=False,
                capture_intermediates=lambda module, _: isinstance(module, atr.AdaptiveTapeReading),
                mutable=["intermediates", *models_base.AUX_COLLECTIONS],
            )
            readings = jax.tree.leaves(
                state.get("intermediates", {}), is_leaf=lambda x: isinstance(x, atr.TapeReading)
            )
            if not readings:
                raise ConfigError(
                    f"{where}.type='tape_selection' needs a model with Adaptive Tape Reading; "
                    f"{type(model).__name__} has none"
                )
            real = batch["mask"] > 0
            used = readings[0].used & real[:, None]
            return used.sum(0, dtype=jnp.int32), real.sum(dtype=jnp.int32)

        return jax.jit(count, out_shardings=NamedSharding(experiment.mesh, PartitionSpec()))
