"""T5 at scale: logical names on every parameter, bfloat16 compute, rematerialisation.

Also the helpers the AltUp scale tests share (`loss_and_grads`, `remat_count`, ...).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.errors import ConfigError
from framework.models import partitioning as pt
from framework.models.t5 import model as t5_model
from framework.train import sharding
from tests.framework.models import test_t5
from tests.framework.models.test_t5 import make_batch

# bfloat16 keeps 8 bits of mantissa (relative step 2^-8 = 0.4%); a tiny model's first
# loss (~log vocab) moves by a few of those.
BF16_LOSS_RTOL = 2e-2


def tiny_config(**overrides):
    """test_t5's tiny T5 with one encoder and two decoder layers (fast compiles)."""
    return test_t5.tiny_config(num_encoder_layers=1, num_decoder_layers=2, **overrides)


def init(model, batch):
    """The model's parameters (a compiled init: eager initialisation is slower)."""
    return jax.jit(model.init)(jax.random.key(0), batch)


def boxed_axes(model, batch) -> dict[tuple[str, ...], tuple[str, ...] | None]:
    """{parameter path: logical names} from the abstract boxed initialisation."""
    return sharding.logical_axes(jax.eval_shape(model.init_boxed, jax.random.key(0), batch))


def param_shapes(model, batch) -> dict[tuple[str, ...], tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(
        jax.eval_shape(model.init, jax.random.key(0), batch)
    )[0]
    return {sharding.path_keys(path): tuple(leaf.shape) for path, leaf in flat}


def assert_all_annotated(model, batch) -> dict[tuple[str, ...], tuple[str, ...]]:
    """Every parameter float32 with one mapped logical name per dimension; returns the
    names by path."""
    axes = boxed_axes(model, batch)
    assert sharding.unmapped_axes(axes) == []
    shapes = param_shapes(model, batch)
    assert set(shapes) == set(axes)
    for path, names in axes.items():
        assert len(names) == len(shapes[path]), (path, names, shapes[path])
    abstract = jax.eval_shape(model.init, jax.random.key(0), batch)
    assert {leaf.dtype for leaf in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}
    return axes


def with_fields(model_class, config, **fields):
    """A model of `model_class` on a copy of `config` with `fields` set."""
    config = config.copy_and_resolve_references()
    for key, value in fields.items():
        config[key] = value
    return model_class(config, {})


def loss_and_grads(model, params, batch, *, train: bool = True):
    """The mean per-token loss (the trainer's ratio of sums), its gradients and the
    logits, jitted; dropout (if any) from a fixed key."""

    def loss(p):
        logits, _ = model.apply(p, batch, train=train, rng=jax.random.key(1))
        total, count = model.metrics(logits, batch)["loss"]
        return total.sum() / count.sum(), logits

    (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return value, grads, logits


def remat_count(model, params, batch) -> int:
    """How many rematerialised calls the training forward pass makes (top level)."""
    jaxpr = jax.make_jaxpr(
        lambda p: model.apply(p, batch, train=True, rng=jax.random.key(1))[0].sum()
    )(params)
    return sum(
        "remat" in eqn.primitive.name or "checkpoint" in eqn.primitive.name
        for eqn in jaxpr.jaxpr.eqns
    )


def assert_remat_matches(
    model_class, config, batch, num_layers: int, params=None, policy: str = "block"
) -> None:
    """remat=`policy`: the same parameter tree (paths, shapes, logical names), loss and
    gradients as 'none', with one rematerialised call per layer of both stacks."""
    plain = with_fields(model_class, config, remat="none")
    remat = with_fields(model_class, config, remat=policy)
    assert boxed_axes(remat, batch) == boxed_axes(plain, batch)
    assert param_shapes(remat, batch) == param_shapes(plain, batch)
    params = init(plain, batch) if params is None else params
    assert remat_count(plain, params, batch) == 0
    assert remat_count(remat, params, batch) == num_layers
    loss, grads, _ = loss_and_grads(plain, params, batch)
    remat_loss, remat_grads, _ = loss_and_grads(remat, params, batch)
    np.testing.assert_allclose(remat_loss, loss, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), remat_grads, grads
    )


def first_loss(model, params, batch):
    """(mean per-token loss, logits) of the evaluation forward pass, jitted."""

    def loss(p):
        logits, _ = model.apply(p, batch, train=False)
        total, count = model.metrics(logits, batch)["loss"]
        return total.sum() / count.sum(), logits

    return jax.jit(loss)(params)


def assert_bf16_first_loss_close(model_class, config, batch, params=None) -> None:
    """bfloat16 compute: float32 parameters (same tree) and logits, the first loss
    within bfloat16 tolerance of float32's but not equal to it (the compute changed)."""
    f32 = with_fields(model_class, config, dtype="float32")
    bf16 = with_fields(model_class, config, dtype="bfloat16")
    assert jax.eval_shape(bf16.init, jax.random.key(0), batch) == jax.eval_shape(
        f32.init, jax.random.key(0), batch
    )
    params = init(f32, batch) if params is None else params
    loss32, _ = first_loss(f32, params, batch)
    loss16, logits16 = first_loss(bf16, params, batch)
    assert logits16.dtype == jnp.float32
    assert np.isfinite(loss16)
    assert float(loss16) != float(loss32)
    np.testing.assert_allclose(loss16, loss32, rtol=BF16_LOSS_RTOL)


@pytest.fixture(scope="module")
def params():
    return init(t5_model.T5Model(tiny_config(), {}), make_batch())


def test_every_t5_parameter_has_its_logical_names():
    model = t5_model.T5Model(tiny_config(), {})
    axes = assert_all_annotated(model, make_batch())
    expected = {
        ("token_embedding", "embedding"): (pt.VOCAB, pt.EMBED),
        ("encoder", "relpos_bias", "rel_embedding"): (pt.HEADS, pt.BUCKETS),
        ("decoder", "relpos_bias", "rel_embedding"): (pt.HEADS, pt.BUCKETS),
        ("encoder", "final_norm", "scale"): (pt.EMBED,),
        ("decoder", "logits_dense", "kernel"): (pt.EMBED, pt.VOCAB),
    }
    for layer, attentions in (
        (("encoder", "layers_0"), ("attention",)),
        (("decoder", "layers_1"), ("self_attention", "encoder_decoder_attention")),
    ):
        expected[layer + ("pre_mlp_norm", "scale")] = (pt.EMBED,)
        expected[layer + ("mlp", "wi_0", "kernel")] = (pt.EMBED, pt.MLP)
        expected[layer + ("mlp", "wi_1", "kernel")] = (pt.EMBED, pt.MLP)
        expected[layer + ("mlp", "wo", "kernel")] = (pt.MLP, pt.EMBED)
        for attention in attentions:
            for projection in ("query", "key", "value"):
                expected[layer + (attention, projection, "kernel")] = (pt.EMBED, pt.HEADS, pt.KV)
            expected[layer + (attention, "out", "kernel")] = (pt.HEADS, pt.KV, pt.EMBED)
    for path, names in expected.items():
        assert axes[path] == names, path


def test_precision_fields_are_declared_and_checked():
    config = t5_model.T5Model.default_config()
    assert (config.dtype, config.remat) == ("float32", "none")
    for field, value in (("dtype", "float16"), ("remat", "everything")):
        bad = tiny_config(**{field: value})
        with pytest.raises(ConfigError, match=f"config.model.{field}"):
            t5_model.T5Model.check_config(bad)


def test_bf16_first_loss_is_close_to_float32(params):
    assert_bf16_first_loss_close(t5_model.T5Model, tiny_config(), make_batch(), params)


def test_remat_gives_the_same_loss_and_gradients(params):
    config = tiny_config(dropout_rate=0.1)  # dropout masks must not change either
    assert_remat_matches(t5_model.T5Model, config, make_batch(), 1 + 2, params)
