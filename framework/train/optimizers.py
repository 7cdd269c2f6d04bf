"""Optimizers from `config.optimizer`: adamw, sgd (momentum), adafactor.

Weight decay applies to the parameters selected by `weight_decay_mask` (`kernels`:
arrays with more than one dimension, so biases, norms and scalars are not decayed;
`all`). Global-norm clipping runs first when `grad_clip_norm > 0`.
"""

from __future__ import annotations

import math

import jax
import ml_collections
import optax

from framework.errors import ConfigError
from framework.train import schedules

OPTIMIZERS = ("adamw", "sgd", "adafactor")


WEIGHT_DECAY_MASKS = ("kernels", "all")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_config(o: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the `config.optimizer.` key of a bad value."""
    if o.name not in OPTIMIZERS:
        raise ConfigError(
            f"config.optimizer.name: unknown optimizer {o.name!r}; known: {', '.join(OPTIMIZERS)}"
        )
    if o.weight_decay_mask not in WEIGHT_DECAY_MASKS:
        raise ConfigError(
            f"config.optimizer.weight_decay_mask must be 'kernels' or 'all', "
            f"got {o.weight_decay_mask!r}"
        )
    for key in ("weight_decay", "grad_clip_norm", "adafactor_clipping_threshold"):
        if not (_finite(o[key]) and o[key] >= 0):
            raise ConfigError(f"config.optimizer.{key} must be a finite number >= 0, got {o[key]}")
    for key in ("b1", "b2"):
        if not (_finite(o[key]) and 0 <= o[key] < 1):
            raise ConfigError(f"config.optimizer.{key} must lie in [0, 1), got {o[key]}")
    if not (_finite(o.eps) and o.eps > 0):
        raise ConfigError(f"config.optimizer.eps must be a finite number > 0, got {o.eps}")
    if not (_finite(o.adafactor_decay_rate) and 0 < o.adafactor_decay_rate <= 1):
        rate = o.adafactor_decay_rate
        raise ConfigError(f"config.optimizer.adafactor_decay_rate must lie in (0, 1], got {rate}")


def decay_mask(params, kind: str):
    """Pytree of bools: which parameters are weight-decayed."""
    if kind == "kernels":
        return jax.tree.map(lambda p: p.ndim > 1, params)
    if kind == "all":
        return jax.tree.map(lambda p: True, params)
    raise ConfigError(
        f"config.optimizer.weight_decay_mask must be 'kernels' or 'all', got {kind!r}"
    )


def create(
    config: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, schedules.Schedule]:
    """Returns (optimizer, learning-rate schedule) for a resolved experiment config."""
    o = config.optimizer
    check_config(o)
    lr = schedules.create(config.lr, config.num_train_steps)
    mask = lambda params: decay_mask(params, o.weight_decay_mask)  # noqa: E731
    if o.name == "adamw":
        tx = optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=mask)
    elif o.name == "sgd":
        tx = optax.chain(
            optax.add_decayed_weights(o.weight_decay, mask=mask)
            if o.weight_decay
            else optax.identity(),
            optax.sgd(lr, momentum=o.b1 or None, nesterov=o.nesterov),
        )
    elif o.name == "adafactor":
        tx = optax.adafactor(
            lr,
            decay_rate=o.adafactor_decay_rate,
            clipping_threshold=o.adafactor_clipping_threshold or None,
            factored=o.adafactor_factored,
            weight_decay_rate=o.weight_decay or None,
            weight_decay_mask=mask,
        )
    else:
        raise AssertionError(o.name)  # check_config allows only OPTIMIZERS
    if o.grad_clip_norm:
        tx = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), tx)
    return tx, lr
