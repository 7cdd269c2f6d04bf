"""The objective and the steps: the one definition that training, benchmarks and tests use.

`objective` is the loss that is optimised (the model's `loss` plus every auxiliary
loss), `make_loss_fn` the training forward pass around it, `make_train_step` one
optimizer step with the running metric sums, `make_eval_step` the sums of one eval batch.
They are pure functions of (params or state, batch); `framework.train.experiment` jits
them with the run's shardings.

Gradient accumulation (`grad_accum_steps=k`) splits the batch into k micro-batches and
scans over them inside the step. The objective is a ratio of masked sums, so each
micro-batch's numerators are divided by the *whole batch's* denominators (target
tokens, real examples), which depend on the batch alone and are computed up front
(`batch_denominators`); the summed gradients are then the whole batch's gradient, and
the metric sums add up exactly. (Dropout draws its masks per micro-batch.)
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from framework.models import base
from framework.models import partitioning as pt
from framework.train import metric_sums, train_state

Pairs = Mapping[str, tuple[jax.Array, jax.Array]]


def objective_denominators(pairs: Pairs, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(the loss's summed denominator, the number of real examples) of a batch."""
    return (pairs["loss"][1] * mask).sum(), mask.sum()


def objective(
    pairs: Pairs, mask: jax.Array, denominators: tuple[jax.Array, jax.Array] | None = None
) -> jax.Array:
    """The loss that is optimised: the model's `loss` plus every auxiliary loss.

    `loss` is a ratio of masked sums (e.g. cross-entropy per real target token); each
    auxiliary loss is a masked mean over real examples. Both denominators are guarded,
    so a batch of padding only gives 0, not NaN. `denominators` (of a whole batch, for
    one of its micro-batches) replace this batch's own.
    """
    loss_den, count = objective_denominators(pairs, mask) if denominators is None else denominators
    total = (pairs["loss"][0] * mask).sum() / jnp.maximum(loss_den, 1e-9)
    for name, (value, _) in pairs.items():
        if name.startswith(f"{base.AUX_LOSS}/"):
            total = total + (value * mask).sum() / jnp.maximum(count, 1.0)
    return total


def batch_denominators(model: base.BaseModel, params, batch, rng) -> tuple[jax.Array, jax.Array]:
    """`objective_denominators` of `batch` without running the model.

    Denominators are counts that depend on the batch only (`BaseModel.metrics`), so the
    metrics are evaluated on zero outputs of the right shapes; XLA drops the unused
    numerators, and no forward pass over the whole batch is compiled.
    """
    shapes = jax.eval_shape(lambda p: model.apply(p, batch, train=True, rng=rng), params)
    outputs, aux = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    pairs = metric_sums.metric_pairs(model, outputs, aux, batch)
    return objective_denominators(pairs, batch["mask"])


def micro_batches(batch, k: int):
    """[B, ...] -> [k, B / k, ...]; micro-batch i takes rows i, i + k, ..., so each one
    is spread over every device that holds a slice of the batch."""

    def split(x):
        x = x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)
        return pt.constrain(x, None, pt.BATCH, *([None] * (x.ndim - 2)))

    return jax.tree.map(split, batch)


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


def make_gradient_fn(model: base.BaseModel, grad_accum_steps: int = 1) -> Callable:
    """`gradients(params, batch, rng) -> (grads, masked metric sums)` of the objective,
    over the whole batch at once or over `grad_accum_steps` micro-batches (`lax.scan`)."""
    loss_fn = make_loss_fn(model)
    k = grad_accum_steps

    def whole_batch(params, batch, rng):
        grads, (pairs, _) = jax.grad(loss_fn, has_aux=True)(params, batch, rng)
        return grads, metric_sums.masked_sums(pairs, batch["mask"])

    if k == 1:
        return whole_batch

    def accumulated(params, batch, rng):
        denominators = batch_denominators(model, params, batch, rng)

        def micro_objective(p, micro, micro_rng):
            outputs, aux = model.apply(p, micro, train=True, rng=micro_rng)
            pairs = metric_sums.metric_pairs(model, outputs, aux, micro)
            return objective(pairs, micro["mask"], denominators), pairs

        def add_micro_batch(carry, inputs):
            grads, sums = carry
            index, micro = inputs
            micro_rng = jax.random.fold_in(rng, index)
            g, pairs = jax.grad(micro_objective, has_aux=True)(params, micro, micro_rng)
            micro_sums = metric_sums.masked_sums(pairs, micro["mask"])
            return (jax.tree.map(jnp.add, grads, g), jax.tree.map(jnp.add, sums, micro_sums)), None

        micros = micro_batches(batch, k)
        first = jax.tree.map(lambda x: x[0], micros)
        sums_shape = jax.eval_shape(
            lambda: metric_sums.masked_sums(micro_objective(params, first, rng)[1], first["mask"])
        )
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (params, sums_shape))
        (grads, sums), _ = jax.lax.scan(add_micro_batch, zeros, (jnp.arange(k), micros))
        return grads, sums

    return accumulated


def make_train_step(
    model: base.BaseModel, tx, lr_fn, seed: int, grad_accum_steps: int = 1
) -> Callable:
    """`train_step(state, batch) -> state`: gradient, update, running metric sums.

    Dropout draws from (seed, step), so a resumed run repeats an uninterrupted one. A
    non-finite loss or gradient is recorded in the state (the host checks it at log and
    checkpoint time, without a device sync every step).
    """
    gradients = make_gradient_fn(model, grad_accum_steps)

    def train_step(state: train_state.TrainState, batch) -> train_state.TrainState:
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        grads, sums = gradients(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
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
