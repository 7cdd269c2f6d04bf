"""ACT invariants and hand-computed cases; the UT / UViT models end to end."""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.config import fields
from framework.errors import ConfigError
from framework.models import layers
from projects.baselines import act
from projects.baselines.models import UTParity, UViT
from tests.projects import model_testing as mt


class AddOne(nn.Module):
    """A stand-in layer: state_n = x + n, so the ACT output is easy to compute by hand."""

    @nn.compact
    def __call__(self, x, valid=None, *, train):
        return x + 1.0


class Damp(nn.Module):
    """A stand-in layer that keeps states distinct across examples and tokens."""

    @nn.compact
    def __call__(self, x, valid=None, *, train):
        return 0.9 * x


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _act(layer: nn.Module, **settings) -> act.AdaptiveComputationTime:
    return act.AdaptiveComputationTime(layer=layer, settings=act.ACTSettings(**settings))


@pytest.mark.parametrize(
    "max_steps,weights,updates,remainder",
    [(5, [0.4, 0.4, 0.2, 0.0, 0.0], 3, 0.2), (2, [0.4, 0.6], 2, 0.6)],
    ids=["halts_at_3", "forced_at_max_steps"],
)
def test_hand_computed_constant_halting(max_steps, weights, updates, remainder):
    """p = 0.4 every step, threshold 0.99: halts at step 3 with R = 0.2 (N + R = 3.2),
    or is forced to halt at max_steps = 2 with R = 0.6 (N + R = 2.6)."""
    module = _act(
        AddOne(),
        max_steps=max_steps,
        act_epsilon=0.01,
        halting_bias_init=_logit(0.4),
        step_embedding=False,
    )
    assert module.settings.threshold == 0.99
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 8)), jnp.float32)
    out = module.apply(module.init(jax.random.key(0), x, train=False), x, train=False)
    np.testing.assert_allclose(np.asarray(out.weights), np.tile(weights, (3, 1)).T, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.updates), updates)
    np.testing.assert_allclose(np.asarray(out.remainder), remainder, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.ponder), updates + remainder, atol=1e-6)
    expected_shift = sum(w * (n + 1) for n, w in enumerate(weights))
    np.testing.assert_allclose(np.asarray(out.output), np.asarray(x) + expected_shift, atol=1e-5)


@pytest.mark.parametrize("halting", ["example", "token"])
def test_invariants_with_varying_halting(halting):
    """Random halting kernel, so examples (tokens) halt at different steps."""
    module = _act(Damp(), max_steps=6, halting=halting, halting_bias_init=-1.0)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(8, 5, 16)), jnp.float32)
    params = module.init(jax.random.key(0), x, train=False)["params"]
    params["halting_kernel"] = jnp.asarray(rng.normal(size=16), jnp.float32)
    out = module.apply({"params": params}, x, train=False)
    shape = (8,) if halting == "example" else (8, 5)
    assert out.updates.shape == shape and out.ponder.shape == (8,)
    np.testing.assert_allclose(np.asarray(out.weights).sum(0), 1.0, atol=1e-6)
    updates = np.asarray(out.updates)
    assert updates.min() >= 1 and updates.max() <= 6
    assert len(np.unique(updates)) > 1
    # Weights are zero after halting and the remainder is the last weight.
    weights = np.moveaxis(np.asarray(out.weights), 0, -1)
    steps = np.arange(6)
    assert np.all(weights[steps >= updates[..., None]] == 0)
    last = np.take_along_axis(weights, updates[..., None].astype(int) - 1, -1)[..., 0]
    np.testing.assert_allclose(last, np.asarray(out.remainder), atol=1e-6)
    per_example = (updates + np.asarray(out.remainder)).reshape(8, -1).mean(-1)
    np.testing.assert_allclose(np.asarray(out.ponder), per_example, atol=1e-5)


def test_early_exit_gives_identical_results():
    """A real shared block; p near 1/3 halts every example after 3 or 4 of 6 steps."""
    block = layers.EncoderBlock(num_heads=2, mlp_dim=32)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(4, 5, 16)), jnp.float32)
    outs = []
    for early_exit in (True, False):
        module = _act(block, max_steps=6, halting_bias_init=_logit(0.33), act_early_exit=early_exit)
        variables = module.init(jax.random.key(0), x, train=False)
        params = dict(variables["params"])
        params["halting_kernel"] = jnp.asarray(0.02 * rng.normal(size=16), jnp.float32)
        if outs:  # the same parameters for both
            params = outs[0][0]
        outs.append((params, module.apply({"params": params}, x, train=False)))
    fast, slow = outs[0][1], outs[1][1]
    assert float(fast.updates.max()) < 6  # so steps were skipped
    assert len(np.unique(np.asarray(fast.updates))) > 1
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(slow)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_ponder_gradient_reaches_halting_unit():
    module = _act(AddOne(), max_steps=4, step_embedding=False)
    x = jnp.ones((2, 3, 8))
    # Parameters are boxed with their logical axis names; differentiate the plain arrays.
    variables = nn.meta.unbox(module.init(jax.random.key(0), x, train=False))
    grads = jax.grad(lambda v: module.apply(v, x, train=False).ponder.sum())(variables)
    # R = 1 - (sum of p before the halting step): raising the bias raises p, lowers R.
    assert float(grads["params"]["halting_bias"]) < 0


@pytest.mark.parametrize(
    "model_name,dataset_name,data,model",
    [
        ("ut_parity", "parity", dict(length=8), dict(hidden_size=16, mlp_dim=32, max_steps=5)),
        (
            "uvit",
            "random_images",
            dict(image_size=8, num_classes=3),
            dict(variant="nano/4", halting="token", max_steps=3),
        ),
    ],
    ids=["ut_parity", "uvit-per_token"],
)
def test_models_forward_backward(model_name, dataset_name, data, model):
    p = 0.4
    m, batch = mt.build(
        model_name, dataset_name, dataset=data, halting_bias_init=_logit(p), **model
    )
    params, loss, grads, aux = mt.init_and_grads(m, batch)
    assert np.isfinite(float(loss)) and mt.all_finite(grads)
    assert mt.grad_norm(grads, "encoder", "shared_block") > 0
    assert mt.grad_norm(grads, "encoder", "act", "halting_bias") > 0
    # The halting kernel is zero-initialised, so p = 0.4 at init whatever the state:
    # N = 3, R = 0.2 (max_steps 5), or forced at N = 3 with R = 1 - 0.8 (max_steps 3).
    ponder = np.asarray(aux["aux_metrics"]["ponder_cost"])
    np.testing.assert_allclose(ponder, 3.2, atol=1e-5)
    np.testing.assert_allclose(np.asarray(aux["aux_loss"]["ponder"]), 0.032, atol=1e-6)
    np.testing.assert_allclose(np.asarray(aux["aux_metrics"]["act_updates"]), 3.0)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("max_steps", 0, "model.max_steps must be positive, got 0"),
        ("halting", "layer", r"model.halting must be one of \('example', 'token'\), got 'layer'"),
        ("act_epsilon", 0.0, r"model.act_epsilon must lie in \(0, 1\), got 0.0"),
        ("act_epsilon", 1.0, r"model.act_epsilon must lie in \(0, 1\)"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(field, value, message):
    with pytest.raises(ConfigError, match=message):
        act.ACTSettings(**{field: value})


def test_settings_resolve_max_steps_and_are_the_only_declaration():
    assert act.ACTSettings(act_epsilon=0.25).threshold == 0.75
    assert act.ACTSettings().resolved(num_layers=12).max_steps == 12
    assert act.ACTSettings(max_steps=3).resolved(num_layers=12).max_steps == 3
    with pytest.raises(ConfigError, match="model.max_steps must be set"):
        act.ACTSettings().resolved()
    defaults = {f.name: f.default for f in dataclasses.fields(act.ACTSettings)}
    for model_cls, max_steps in ((UTParity, 8), (UViT, None)):
        config = model_cls.default_config()
        assert {name: config[name] for name in defaults} == dict(defaults, max_steps=max_steps)
        assert fields.build(act.ACTSettings, config) == act.ACTSettings(max_steps=max_steps)
    assert UViT.default_config().get_type("max_steps") is int


def test_models_report_bad_overrides():
    with pytest.raises(ConfigError, match="model.act_epsilon"):
        mt.build("ut_parity", "parity", dataset=dict(length=8), act_epsilon=2.0)
    with pytest.raises(ConfigError, match="model.max_steps must be set"):
        mt.build("ut_parity", "parity", dataset=dict(length=8), max_steps=None)
