"""Issue 21 for the baselines (UT / UViT / U2T with ACT, A-ViT): every parameter has a
mapped logical name, bfloat16 leaves the halting decisions as float32's, and
rematerialised blocks give float32's loss and gradients."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.models import base
from framework.models import partitioning as pt
from framework.train import sharding, steps
from projects.baselines import avit
from tests.projects import model_testing as mt

IMAGES = dict(image_size=8, num_classes=3)
WIDTHS = dict(hidden_size=16, num_heads=2, mlp_dim=32)
# name: (model, dataset, dataset fields, model fields)
CASES = {
    "ut_parity": ("ut_parity", "parity", dict(length=8), dict(WIDTHS, max_steps=5)),
    "uvit": ("uvit", "random_images", IMAGES, dict(variant="nano/4", max_steps=5)),
    "u2t": ("uvit", "random_images", IMAGES, dict(variant="nano/4", max_steps=5, halting="token")),
    "avit": (
        "avit",
        "random_images",
        IMAGES,
        dict(WIDTHS, num_layers=4, halting_gamma=5.0, halting_beta=1.0),
    ),
}
ACT_CASES = ("ut_parity", "uvit", "u2t")

# A halting probability whose sums straddle the threshold 0.99 by less than bfloat16's
# rounding: in float32 3p = 0.9897 < 0.99, so every example (token) halts at step 4;
# summed in bfloat16 (p -> 0.3301) the sum reaches 0.992 at step 3.
NEAR_THRESHOLD_P = 0.3299
# case: (scale of a random halting kernel, halting bias) under which the examples
# (tokens) halt after different numbers of steps at init. The examples' pooled states
# are nearly alike at init, so ut_parity's never differ; it has the first part only.
RANDOM_HALTING = {"uvit": (3.0, 2.0), "u2t": (3.0, math.log(0.3 / 0.7))}


def _build(case: str, **overrides):
    model_name, dataset_name, data, model = CASES[case]
    return mt.build(model_name, dataset_name, dataset=data, **{**model, **overrides})


def _init(model: base.BaseModel, batch) -> dict:
    """Initial float32 parameters with a random head (so the loss sees the encoder)."""
    return mt.randomize_head(jax.jit(model.init)(jax.random.key(0), batch))


@functools.cache
def _jitted_loss_fn(model: base.BaseModel):
    """The trainer's training loss function for `model`, compiled once per model."""
    return jax.jit(steps.make_loss_fn(model))


def _loss_aux(model: base.BaseModel, params, batch):
    """The trainer's training loss (task + auxiliary) and the auxiliaries."""
    loss, (_, aux) = _jitted_loss_fn(model)(params, batch, jax.random.key(1, impl="rbg"))
    return loss, aux


def _loss_grads_aux(model: base.BaseModel, params, batch):
    """The trainer's training loss (task + auxiliary), its gradient and the auxiliaries."""
    loss_fn = steps.make_loss_fn(model)
    run = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    (loss, (_, aux)), grads = run(params, batch, jax.random.key(1, impl="rbg"))
    return loss, grads, aux


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.mark.parametrize("case", list(CASES))
def test_every_parameter_has_a_mapped_logical_name(case):
    model, batch = _build(case, dtype="bfloat16")
    boxed = jax.eval_shape(model.init_boxed, jax.random.key(0), batch)
    axes = sharding.logical_axes(boxed)
    assert sharding.unmapped_axes(axes) == []
    # Parameters stay float32 whatever the compute dtype.
    assert {leaf.dtype for leaf in jax.tree.leaves(nn.meta.unbox(boxed))} == {jnp.dtype("float32")}
    if case in ACT_CASES:
        assert axes["encoder", "act", "halting_kernel"] == (pt.EMBED,)
        assert axes["encoder", "act", "halting_bias"] == ()
        assert axes["encoder", "act", "step_embedding"] == (pt.LAYERS, pt.EMBED)
        kernel = ("encoder", "shared_block", "mlp", "fc1", "kernel")
    else:
        kernel = ("encoder", "block_3", "mlp", "fc1", "kernel")
    assert axes[kernel] == (pt.EMBED, pt.MLP)
    assert axes["encoder", "ln_final", "scale"] == (pt.EMBED,)


@pytest.mark.parametrize("case", ACT_CASES)
def test_act_bfloat16_halts_like_float32(case):
    """The same parameters in both dtypes. At init (zero halting kernel) p is the
    near-threshold 0.3299 everywhere: 4 updates, as in float32, only if the halting sums
    are float32. Then a random halting kernel (p depends on the bfloat16 states): the
    per-example (per-token) update counts still equal float32's (as long as no halting
    sum lands within the states' bfloat16 rounding of the threshold, as here)."""
    overrides = dict(halting_bias_init=_logit(NEAR_THRESHOLD_P))
    model32, batch = _build(case, **overrides)
    model16, _ = _build(case, dtype="bfloat16", **overrides)
    params = _init(model32, batch)
    loss32, aux32 = _loss_aux(model32, params, batch)
    loss16, aux16 = _loss_aux(model16, params, batch)
    for aux in (aux32, aux16):
        np.testing.assert_array_equal(np.asarray(aux["aux_metrics"]["act_updates"]), 4.0)
        np.testing.assert_allclose(
            np.asarray(aux["aux_metrics"]["ponder_cost"]), 4 + 1 - 3 * NEAR_THRESHOLD_P, rtol=1e-5
        )
    np.testing.assert_array_equal(
        np.asarray(aux16["aux_loss"]["ponder"]), np.asarray(aux32["aux_loss"]["ponder"])
    )
    assert float(loss16) != float(loss32)  # bfloat16 did compute ...
    np.testing.assert_allclose(float(loss16), float(loss32), rtol=2e-2)  # ... close by

    if case not in RANDOM_HALTING:
        return
    scale, bias = RANDOM_HALTING[case]
    act = dict(params["encoder"]["act"])
    width = act["halting_kernel"].shape[0]
    act["halting_kernel"] = scale * jax.random.normal(jax.random.key(3), (width,))
    act["halting_bias"] = jnp.asarray(bias, jnp.float32)
    params = {**params, "encoder": {**params["encoder"], "act": act}}
    _, aux32 = _loss_aux(model32, params, batch)
    _, aux16 = _loss_aux(model16, params, batch)
    updates32 = np.asarray(aux32["aux_metrics"]["act_updates"])
    assert len(np.unique(updates32)) > 1  # the halting varies between examples
    np.testing.assert_array_equal(np.asarray(aux16["aux_metrics"]["act_updates"]), updates32)


class _SetFirstFeature(nn.Module):
    """A stand-in A-ViT block that sets every token's first feature to `value`."""

    value: float

    @nn.compact
    def __call__(self, x, valid=None, *, train):
        return x.at[..., 0].set(self.value)


def test_avit_halting_sums_are_float32():
    """Gate sigmoid(t) with t = -0.7109375 (exact in bfloat16): h = 0.32939, so the
    cumulative score stays under 0.99 after 3 blocks in float32 (every token halts at
    block 4); in bfloat16 (h -> 0.3301) it would reach 0.992 at block 3."""
    settings = avit.AViTSettings(halting_gamma=1.0, halting_beta=0.0)
    module = avit.AdaptiveTokens(
        blocks=tuple(_SetFirstFeature(-0.7109375) for _ in range(6)), settings=settings
    )
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4)), jnp.float32)
    for dtype in (jnp.float32, jnp.bfloat16):
        out = module.apply({}, x.astype(dtype), train=False)
        assert out.output.dtype == dtype and out.cumulative.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(out.updates), 4.0)
        np.testing.assert_allclose(np.asarray(out.remainder), 1 - 3 * 0.32939172, rtol=1e-5)


def test_avit_bfloat16_halts_like_float32():
    """The whole A-ViT on a fixed batch: every token's halting block in bfloat16 equals
    float32's, and the first loss is within bfloat16 tolerance."""
    model32, batch = _build("avit")
    model16, _ = _build("avit", dtype="bfloat16")
    params = _init(model32, batch)

    def run(model):
        @jax.jit
        def apply(params):
            _, state = model.module.apply(
                {"params": params},
                batch["inputs"],
                train=False,
                mutable=[*base.AUX_COLLECTIONS, "intermediates"],
            )
            loss = steps.make_loss_fn(model)(params, batch, jax.random.key(1, impl="rbg"))[0]
            return state["intermediates"]["encoder"]["act"]["updates"][0], loss

        updates, loss = apply(params)
        return np.asarray(updates), float(loss)

    updates32, loss32 = run(model32)
    updates16, loss16 = run(model16)
    assert updates32.shape == (4, 5) and len(np.unique(updates32)) >= 2
    np.testing.assert_array_equal(updates16, updates32)
    assert loss16 != loss32
    np.testing.assert_allclose(loss16, loss32, rtol=2e-2)


REMAT_CASES = {
    "ut_parity-dropout": ("ut_parity", dict(dropout_rate=0.1, max_steps=2)),
    "u2t": ("u2t", dict(max_steps=2)),
    "avit": ("avit", {}),
}


@pytest.mark.parametrize("case", list(REMAT_CASES))
def test_remat_block_equals_none(case):
    """remat='block' keeps the parameter tree (UT: one shared block) and gives the same
    loss, auxiliary losses and gradients as 'none'; the step really rematerialises."""
    name, overrides = REMAT_CASES[case]
    plain, batch = _build(name, **overrides)
    remat, _ = _build(name, remat="block", **overrides)
    params = _init(plain, batch)
    shapes = lambda m: jax.eval_shape(m.init, jax.random.key(0), batch)  # noqa: E731
    assert shapes(remat) == shapes(plain)
    if name != "avit":
        assert set(params["encoder"]) == {"shared_block", "act", "ln_final"}
    results = [_loss_grads_aux(m, params, batch) for m in (plain, remat)]
    (loss0, grads0, aux0), (loss1, grads1, aux1) = results
    np.testing.assert_allclose(float(loss1), float(loss0), rtol=1e-6)
    assert set(aux0["aux_loss"]) and set(aux1["aux_loss"]) == set(aux0["aux_loss"])
    for key in aux0["aux_loss"]:
        np.testing.assert_allclose(aux1["aux_loss"][key], aux0["aux_loss"][key], rtol=1e-6)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # noqa: E731
    jax.tree.map(close, grads1, grads0)
    assert mt.grad_norm(grads0, "encoder") > 0

    remat_primitive = str(jax.make_jaxpr(jax.checkpoint(lambda x: x))(1.0).eqns[0].primitive)

    def jaxpr(model):
        loss_fn = steps.make_loss_fn(model)
        return str(jax.make_jaxpr(loss_fn)(params, batch, jax.random.key(1, impl="rbg")))

    assert f"{remat_primitive}[" in jaxpr(remat) and f"{remat_primitive}[" not in jaxpr(plain)
