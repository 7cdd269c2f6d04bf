"""The objective and the steps: the one definition that training, benchmarks and tests use.

`objective` is the loss that is optimised (the model's `loss` plus every auxiliary
loss), `make_loss_fn` the training forward pass around it, `make_train_step` one
optimizer step with the running metric sums, `make_eval_step` the sums of one eval batch.
They are pure functions of (params or state, batch); `framework.train.experiment` jits
them with the run's shardings.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from framework.models import base
from framework.train import metric_sums, train_state


def objective(pairs: Mapping[str, tuple[jax.Array, jax.Array]], mask: jax.Array) -> jax.Array:
    """The loss that is optimised: the model's `loss` plus every auxiliary loss.

    `loss` is a ratio of masked sums (e.g. cross-entropy per real target token); each
    auxiliary loss is a masked mean over real examples. Both denominators are guarded,
    so a batch of padding only gives 0, not NaN.
    """
    loss_num, loss_den = pairs["loss"]
    total = (loss_num * mask).sum() / jnp.maximum((loss_den * mask).sum(), 1e-9)
    for name, (value, _) in pairs.items():
        if name.startswith(f"{base.AUX_LOSS}/"):
            total = total + (value * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    return total


def make_loss_fn(model: base.BaseModel) -> Callable:
    """`loss_fn(params, batch, rng) -> (loss, (metric pairs, auxiliary values))`.

    The training forward pass (dropout from `rng`) and `objective`; the pairs are what
    the trainer sums into its logged metrics.
    """

    def loss_fn(params, batch, rng):
        outputs, aux = model.apply(params, batch, train=True, rng=rng)
        pairs = metric_sums.metric_pairs(model, outputs, aux, batch)
        return objective(pairs, batch["mask"]), (pairs, aux)

    return loss_fn


def make_train_step(model: base.BaseModel, tx, lr_fn, seed: int) -> Callable:
    """`train_step(state, batch) -> state`: gradient, update, running metric sums.

    Dropout draws from (seed, step), so a resumed run repeats an uninterrupted one. A
    non-finite loss or gradient is recorded in the state (the host checks it at log and
    checkpoint time, without a device sync every step).
    """
    loss_fn = make_loss_fn(model)

    def train_step(state: train_state.TrainState, batch) -> train_state.TrainState:
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        grads, (pairs, _) = jax.grad(loss_fn, has_aux=True)(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        sums = metric_sums.masked_sums(pairs, batch["mask"])
        sums["grad_norm"] = jnp.stack([grad_norm, 1.0])
        sums["learning_rate"] = jnp.stack([lr_fn(state.step), 1.0])
        finite = jnp.isfinite(sums["loss"][0]) & jnp.isfinite(grad_norm)
        bad_step = jnp.where(finite, train_state.NO_BAD_STEP, state.step + 1)
        return state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            metric_sums=jax.tree.map(jnp.add, state.metric_sums, sums),
            first_nonfinite_step=jnp.minimum(state.first_nonfinite_step, bad_step),
        )

    return train_step


def make_eval_step(model: base.BaseModel) -> Callable:
    """`eval_step(params, batch) -> (masked metric sums, histogram values, mask)`."""

    def eval_step(params, batch):
        outputs, aux = model.apply(params, batch, train=False)
        pairs = metric_sums.metric_pairs(model, outputs, aux, batch)
        return (
            metric_sums.masked_sums(pairs, batch["mask"]),
            dict(aux[base.AUX_HISTOGRAMS]),
            batch["mask"],
        )

    return eval_step
