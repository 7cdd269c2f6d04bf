"""Compound learning-rate schedules, written as a product of named factors.

`config.lr.factors` is a `*`-joined list, e.g. `'constant*linear_warmup*cosine_decay'`
(Scenic's convention). Factors:
- `constant`: lr.base
- `linear_warmup`: min(1, step / warmup_steps)
- `rsqrt_decay`: 1 / sqrt(max(step, warmup_steps))   (T5X: base 1.0 -> 0.01 at 10k)
- `rsqrt_normalized_decay`: sqrt(warmup_steps) / sqrt(max(step, warmup_steps))
- `cosine_decay`: from 1 to end_factor over the decay phase, by a half cosine
- `linear_decay`: from 1 to end_factor over the decay phase, linearly
The decay phase runs from warmup_steps to decay_steps (num_train_steps when 0).
"""

from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp
import ml_collections

from framework.errors import ConfigError

Schedule = Callable[[jnp.ndarray], jnp.ndarray]
FACTORS = (
    "constant",
    "linear_warmup",
    "rsqrt_decay",
    "rsqrt_normalized_decay",
    "cosine_decay",
    "linear_decay",
)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_config(lr: ml_collections.ConfigDict, num_train_steps: int) -> list[str]:
    """Raises ConfigError naming the `config.lr.` key of a bad value; returns the factors."""
    names = [n.strip() for n in lr.factors.split("*") if n.strip()]
    for name in names:
        if name not in FACTORS:
            raise ConfigError(
                f"config.lr.factors: unknown lr factor {name!r}; known: {', '.join(FACTORS)}"
            )
    if not (_finite(lr.base) and lr.base >= 0):
        raise ConfigError(f"config.lr.base must be a finite number >= 0, got {lr.base}")
    for key in ("warmup_steps", "decay_steps"):
        if lr[key] < 0:
            raise ConfigError(f"config.lr.{key} must be >= 0, got {lr[key]}")
    if not (_finite(lr.end_factor) and lr.end_factor >= 0):
        raise ConfigError(f"config.lr.end_factor must be a finite number >= 0, got {lr.end_factor}")
    warmup, decay_end = lr.warmup_steps, lr.decay_steps or num_train_steps
    if any(n.endswith("_decay") and n.startswith(("cos", "lin")) for n in names):
        if decay_end <= warmup:
            raise ConfigError(
                f"config.lr: decay ends at step {decay_end:g}, not after "
                f"warmup_steps={warmup:g} (set config.lr.decay_steps or config.num_train_steps)"
            )
    return names


def create(lr: ml_collections.ConfigDict, num_train_steps: int) -> Schedule:
    """Builds step -> learning rate from `config.lr`."""
    names = check_config(lr, num_train_steps)
    warmup = float(lr.warmup_steps)
    decay_end = float(lr.decay_steps or num_train_steps)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        value = jnp.ones([], jnp.float32)
        progress = jnp.clip((step - warmup) / max(decay_end - warmup, 1.0), 0.0, 1.0)
        for name in names:
            if name == "constant":
                value = value * lr.base
            elif name == "linear_warmup":
                value = value * (jnp.minimum(1.0, step / warmup) if warmup > 0 else 1.0)
            elif name == "rsqrt_decay":
                value = value / jnp.sqrt(jnp.maximum(step, max(warmup, 1.0)))
            elif name == "rsqrt_normalized_decay":
                value = (
                    value
                    * jnp.sqrt(max(warmup, 1.0))
                    / jnp.sqrt(jnp.maximum(step, max(warmup, 1.0)))
                )
            elif name == "cosine_decay":
                cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
                value = value * (lr.end_factor + (1.0 - lr.end_factor) * cosine)
            elif name == "linear_decay":
                value = value * (1.0 - (1.0 - lr.end_factor) * progress)
        return value

    return schedule
