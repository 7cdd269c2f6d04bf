"""The train state: everything a resumed run needs, checkpointed as one pytree.

Besides step, parameters and optimizer state it carries the running sums of the
training metrics since the last log line, and the first step whose loss was not
finite, so that a run resumed from a checkpoint logs exactly what an uninterrupted
run logs. The dropout RNG is derived from (seed, step) and so is not stored.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

NO_BAD_STEP = jnp.iinfo(jnp.int32).max


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    metric_sums: dict[str, jax.Array]  # name -> [2] (numerator, denominator) since last log
    first_nonfinite_step: jax.Array


def create(params: Any, opt_state: Any, metric_names: tuple[str, ...]) -> TrainState:
    return TrainState(
        step=jnp.zeros([], jnp.int32),
        params=params,
        opt_state=opt_state,
        metric_sums={name: jnp.zeros([2], jnp.float32) for name in metric_names},
        first_nonfinite_step=jnp.asarray(NO_BAD_STEP, jnp.int32),
    )


def reset_metric_sums(state: TrainState) -> TrainState:
    return state.replace(metric_sums=jax.tree.map(jnp.zeros_like, state.metric_sums))


def param_count(params: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
