"""AltUp and Sequence-AltUp steps against NumPy, their init, and the active block."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.models.t5 import layers as t5_layers
from framework.models.t5 import stack as t5_stack
from projects.altup import layers


class ToyLayer(nn.Module):
    """x + tanh(x W): a d-wide layer NumPy can repeat; sows its input."""

    @nn.compact
    def __call__(self, x, context, *, train):
        del context, train
        w = self.param("w", nn.initializers.normal(0.5), (x.shape[-1], x.shape[-1]))
        self.sow("intermediates", "input", x)
        return x + jnp.tanh(x @ w)


def toy_numpy(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x + np.tanh(x @ w)


def empty_context(length: int) -> t5_layers.LayerContext:
    return t5_layers.LayerContext(self_bias=jnp.zeros((1, 1, length, length)))


@pytest.mark.parametrize("compute_input", ["original", "predicted"])
@pytest.mark.parametrize(
    "k,index,active", [(2, 0, "alternating"), (3, 4, "alternating"), (3, 4, "same")]
)
def test_altup_step_matches_numpy_with_random_coefficients(k, index, active, compute_input):
    rng = np.random.default_rng(index + k)
    x = rng.normal(size=(k, 2, 5, 6)).astype(np.float32)
    module = layers.AltUpLayer(
        layer=ToyLayer(parent=None), index=index, k=k, active=active, compute_input=compute_input
    )
    params = module.init(jax.random.key(0), jnp.asarray(x), empty_context(5), train=False)["params"]
    p = rng.normal(size=(k, k)).astype(np.float32)  # far from the identity, where the
    g = rng.normal(size=(k,)).astype(np.float32)  # two compute inputs would agree
    params = {"predict": p, "correct": g, "layer": params["layer"]}
    got = module.apply({"params": params}, jnp.asarray(x), empty_context(5), train=False)

    a = index % k if active == "alternating" else 0
    x_hat = np.stack([sum(p[i, j] * x[j] for j in range(k)) for i in range(k)])
    layer_input = x[a] if compute_input == "original" else x_hat[a]
    y = toy_numpy(layer_input, np.asarray(params["layer"]["w"]))
    expected = np.stack([x_hat[i] + g[i] * (y - x_hat[a]) for i in range(k)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_compute_inputs_differ_away_from_the_identity():
    k = 2
    x = jnp.asarray(np.random.default_rng(7).normal(size=(k, 1, 3, 4)), jnp.float32)

    def run(compute_input, p):
        module = layers.AltUpLayer(
            layer=ToyLayer(parent=None), index=1, k=k, active="alternating",
            compute_input=compute_input,
        )  # fmt: skip
        params = module.init(jax.random.key(0), x, empty_context(3), train=False)["params"]
        params = {**params, "predict": p}
        return np.asarray(module.apply({"params": params}, x, empty_context(3), train=False))

    eye, mixed = jnp.eye(k), jnp.asarray([[0.9, 0.3], [-0.4, 1.2]])
    np.testing.assert_allclose(run("original", eye), run("predicted", eye), rtol=1e-6)
    assert np.abs(run("original", mixed) - run("predicted", mixed)).max() > 1e-2


def test_mix_blocks_is_the_matrix_product():
    rng = np.random.default_rng(0)
    w, blocks = rng.normal(size=(3, 3)), rng.normal(size=(3, 2, 4))
    np.testing.assert_allclose(
        layers.mix_blocks(jnp.asarray(w), jnp.asarray(blocks)),
        np.einsum("ij,jbd->ibd", w, blocks), rtol=1e-5, atol=1e-6,
    )  # fmt: skip


def test_altup_init_gives_every_block_the_layer_update():
    dims = t5_layers.T5Dims(
        vocab_size=10, d_model=16, d_ff=32, num_heads=2, d_kv=8,
        num_encoder_layers=1, num_decoder_layers=1,
    )  # fmt: skip
    k, index = 3, 1
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(k, 2, 4, 16)), jnp.float32)
    context = t5_layers.LayerContext(jnp.asarray(rng.normal(size=(1, 2, 4, 4)), jnp.float32))
    module = layers.AltUpLayer(
        layer=t5_stack.EncoderLayer(dims, parent=None), index=index, k=k, active="alternating"
    )
    params = nn.meta.unbox(module.init(jax.random.key(2), x, context, train=False))["params"]
    np.testing.assert_array_equal(params["predict"], np.eye(k))
    np.testing.assert_array_equal(params["correct"], np.ones(k))
    out = module.apply({"params": params}, x, context, train=False)
    y = t5_stack.EncoderLayer(dims).apply(
        {"params": params["layer"]}, x[index], context, train=False
    )
    update = np.asarray(y - x[index])
    assert np.abs(update).max() > 1e-2
    for i in range(k):
        np.testing.assert_allclose(out[i] - x[i], update, atol=1e-5)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("active", ["alternating", "same"])
def test_active_block_follows_the_layer_index(k, active):
    x = jnp.asarray(np.random.default_rng(3).normal(size=(k, 1, 3, 4)), jnp.float32)
    for index in range(2 * k + 1):
        module = layers.AltUpLayer(layer=ToyLayer(parent=None), index=index, k=k, active=active)
        variables = module.init(jax.random.key(0), x, empty_context(3), train=False)
        _, state = module.apply(
            variables, x, empty_context(3), train=False, mutable=["intermediates"]
        )
        seen = state["intermediates"]["layer"]["input"][0]
        a = index % k if active == "alternating" else 0
        assert layers.active_block(index, k, active) == a
        np.testing.assert_array_equal(seen, x[a])


def sequence_numpy(x, w, index, stride, own, anchor, correct):
    """Sequence-AltUp for a position-wise layer, one position at a time."""
    length = x.shape[1]
    offset = index % stride
    y = toy_numpy(x, w)  # position-wise, so running on a subset changes nothing
    out = np.empty_like(x)
    for t in range(length):
        c = t - (t - offset) % stride
        r = t - c
        if r == 0:
            out[:, t] = y[:, t]
        elif c < 0:
            out[:, t] = own[r - 1] * x[:, t]
        else:
            out[:, t] = (
                own[r - 1] * x[:, t]
                + anchor[r - 1] * x[:, c]
                + correct[r - 1] * (y[:, c] - x[:, c])
            )
    return out


@pytest.mark.parametrize(
    "stride,index,length", [(2, 0, 9), (2, 1, 9), (3, 2, 9), (3, 4, 9), (4, 1, 9), (3, 2, 2)]
)
def test_sequence_step_matches_numpy(stride, index, length):
    rng = np.random.default_rng(stride * 10 + index)
    x = rng.normal(size=(2, length, 6)).astype(np.float32)
    module = layers.SequenceAltUpLayer(layer=ToyLayer(parent=None), index=index, stride=stride)
    variables = nn.meta.unbox(
        module.init(jax.random.key(0), jnp.asarray(x), empty_context(length), train=False)
    )
    params = dict(variables["params"])
    assert params["own"].shape == (stride - 1,)
    np.testing.assert_array_equal(params["own"], 1.0)
    np.testing.assert_array_equal(params["anchor"], 0.0)
    np.testing.assert_array_equal(params["correct"], 1.0)
    for name in ("own", "anchor", "correct"):
        params[name] = rng.normal(size=(stride - 1,)).astype(np.float32)
    got, state = module.apply(
        {"params": params}, jnp.asarray(x), empty_context(length), train=False,
        mutable=["intermediates"],
    )  # fmt: skip
    computed = np.arange(index % stride, length, stride)
    np.testing.assert_array_equal(state["intermediates"]["layer"]["input"][0], x[:, computed])
    expected = sequence_numpy(
        x, np.asarray(params["layer"]["w"]), index, stride,
        params["own"], params["anchor"], params["correct"],
    )  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_sequence_layer_attends_among_computed_positions_with_true_offsets():
    dims = t5_layers.T5Dims(
        vocab_size=10, d_model=16, d_ff=32, num_heads=2, d_kv=8,
        num_encoder_layers=1, num_decoder_layers=1,
    )  # fmt: skip
    length, stride, index = 7, 2, 1
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, length, 16)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(2, 2, length, length)), jnp.float32)
    context = t5_layers.LayerContext(bias)
    module = layers.SequenceAltUpLayer(
        layer=t5_stack.EncoderLayer(dims, parent=None), index=index, stride=stride
    )
    params = module.init(jax.random.key(0), x, context, train=False)["params"]
    out = module.apply({"params": params}, x, context, train=False)
    computed = np.array([1, 3, 5])
    sub_bias = np.asarray(bias)[:, :, computed][:, :, :, computed]
    y = t5_stack.EncoderLayer(dims).apply(
        {"params": params["layer"]}, x[:, computed], t5_layers.LayerContext(jnp.asarray(sub_bias)),
        train=False,
    )  # fmt: skip
    np.testing.assert_allclose(out[:, computed], y, atol=1e-5)
    # At init a skipped position gets its anchor's update; position 0 has no anchor.
    np.testing.assert_allclose(out[:, 4], x[:, 4] + y[:, 1] - x[:, 3], atol=1e-5)
    np.testing.assert_allclose(out[:, 0], x[:, 0], atol=1e-6)
