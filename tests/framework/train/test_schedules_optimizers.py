"""Schedules and optimizers against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.config import schema
from framework.errors import ConfigError
from framework.train import optimizers, schedules


def lr_config(**kw):
    c = schema.trainer_defaults().lr
    c.update(kw)
    return c


def test_warmup_cosine_values():
    fn = schedules.create(
        lr_config(
            base=2.0,
            warmup_steps=10,
            decay_steps=110,
            factors="constant*linear_warmup*cosine_decay",
        ),
        999,
    )
    assert float(fn(0)) == 0.0
    assert float(fn(5)) == pytest.approx(1.0)
    assert float(fn(10)) == pytest.approx(2.0)
    # Halfway through the decay phase the half cosine is at 0.5.
    assert float(fn(60)) == pytest.approx(1.0, rel=1e-6)
    assert float(fn(35)) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.25)), rel=1e-6)
    assert float(fn(110)) == pytest.approx(0.0, abs=1e-7)
    assert float(fn(500)) == pytest.approx(0.0, abs=1e-7)


def test_linear_decay_end_factor_and_default_decay_steps():
    fn = schedules.create(lr_config(base=1.0, factors="constant*linear_decay", end_factor=0.2), 100)
    assert float(fn(0)) == pytest.approx(1.0)
    assert float(fn(50)) == pytest.approx(0.6)
    assert float(fn(100)) == pytest.approx(0.2)


def test_rsqrt_t5x_style():
    fn = schedules.create(
        lr_config(base=1.0, warmup_steps=10000, factors="constant*rsqrt_decay"), 10**6
    )
    assert float(fn(5)) == pytest.approx(0.01)
    assert float(fn(40000)) == pytest.approx(1 / 200)
    fn = schedules.create(
        lr_config(base=3.0, warmup_steps=4, factors="constant*rsqrt_normalized_decay"), 100
    )
    assert float(fn(16)) == pytest.approx(3.0 * 2 / 4)


def test_unknown_factor_is_config_error():
    with pytest.raises(ConfigError, match="unknown lr factor 'cosine'"):
        schedules.create(lr_config(factors="constant*cosine"), 10)


def _config(**optimizer):
    c = schema.trainer_defaults()
    c.num_train_steps = 10
    c.lr.factors = "constant"
    c.lr.base = 0.1
    c.optimizer.update(optimizer)
    return c


def test_sgd_momentum_matches_hand_computation():
    tx, _ = optimizers.create(_config(name="sgd", b1=0.9))
    params = {"w": jnp.array([1.0, 2.0])}
    state = tx.init(params)
    g = {"w": jnp.array([1.0, -1.0])}
    u1, state = tx.update(g, state, params)
    u2, state = tx.update(g, state, params)
    np.testing.assert_allclose(u1["w"], [-0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(u2["w"], [-0.19, 0.19], rtol=1e-6)  # trace = g + 0.9 g


def test_adamw_decays_kernels_only():
    tx, _ = optimizers.create(_config(name="adamw", weight_decay=0.5))
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)
    # Zero gradient: the only update is -lr * wd * param, and only for the kernel.
    np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(updates["bias"], 0.0)
    tx, _ = optimizers.create(_config(name="adamw", weight_decay=0.5, weight_decay_mask="all"))
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["bias"], -0.05, rtol=1e-6)


def test_global_norm_clipping():
    tx, _ = optimizers.create(_config(name="sgd", b1=0.0, grad_clip_norm=1.0))
    params = {"a": jnp.zeros(2)}
    updates, _ = tx.update({"a": jnp.array([3.0, 4.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["a"], [-0.06, -0.08], rtol=1e-6)  # g / 5 * lr


def test_adafactor_builds_and_steps():
    tx, _ = optimizers.create(_config(name="adafactor"))
    params = {"w": jnp.ones((4, 3))}
    updates, _ = tx.update({"w": jnp.ones((4, 3))}, tx.init(params), params)
    assert np.all(np.asarray(updates["w"]) < 0)


def test_unknown_optimizer():
    with pytest.raises(ConfigError, match="unknown optimizer 'adam'"):
        optimizers.create(_config(name="adam"))
