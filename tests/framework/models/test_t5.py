"""T5.1.1: relative position buckets, layers against NumPy, causality, padding, loss."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from framework.errors import ConfigError
from framework.models.t5 import layers as t5_layers
from framework.models.t5 import model as t5_model

VOCAB = 50


def tiny_config(**overrides) -> ml_collections.ConfigDict:
    config = t5_model.T5Model.default_config()
    config.size = "tiny"
    config.vocab_size = VOCAB
    config.d_model = 24
    config.d_ff = 40
    config.num_heads = 3
    config.d_kv = 5  # deliberately not d_model / num_heads
    config.num_encoder_layers = 2
    config.num_decoder_layers = 3
    for key, value in overrides.items():
        config[key] = value
    return config


def make_batch(seed: int = 0, batch: int = 2, inputs: int = 9, targets: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    enc = rng.integers(1, VOCAB, (batch, inputs))
    enc[0, inputs - 3 :] = 0  # padding
    tgt = rng.integers(1, VOCAB, (batch, targets))
    tgt[1, targets - 2 :] = 0
    dec_in = np.concatenate([np.zeros((batch, 1), tgt.dtype), tgt[:, :-1]], axis=1)
    return {
        "encoder_input_tokens": jnp.asarray(enc, jnp.int32),
        "decoder_input_tokens": jnp.asarray(dec_in, jnp.int32),
        "decoder_target_tokens": jnp.asarray(tgt, jnp.int32),
        "mask": jnp.ones((batch,), jnp.float32),
    }


@pytest.fixture(scope="module")
def model_and_params():
    model = t5_model.T5Model(tiny_config(), {})
    params = model.init(jax.random.key(0), make_batch())
    return model, params


def logits_of(model, params, batch) -> np.ndarray:
    return np.asarray(model.apply(params, batch, train=False)[0])


# --- relative position buckets (hand-computed with T5's formula) ---------------------


def test_bidirectional_buckets_by_hand():
    # 16 buckets a side, 8 exact; key before the query: 0..15, after it: 16..31.
    relative = np.array([0, -1, -7, -8, -12, -16, -32, -64, -127, -128, -1000])
    expected = np.array([0, 1, 7, 8, 9, 10, 12, 14, 15, 15, 15])
    got = t5_layers.relative_position_bucket(relative, True, 32, 128)
    np.testing.assert_array_equal(got, expected)
    got_after = t5_layers.relative_position_bucket(-relative, True, 32, 128)
    np.testing.assert_array_equal(got_after, np.where(relative == 0, 0, expected + 16))


def test_causal_buckets_by_hand():
    # 32 buckets, 16 exact, keys after the query all in bucket 0.
    relative = np.array([5, 1, 0, -1, -15, -16, -20, -32, -64, -128, -500])
    expected = np.array([0, 0, 0, 1, 15, 16, 17, 21, 26, 31, 31])
    got = t5_layers.relative_position_bucket(relative, False, 32, 128)
    np.testing.assert_array_equal(got, expected)


def test_relative_position_bias_reads_table_by_bucket():
    dims = t5_layers.dims_from_config(tiny_config(), VOCAB)
    module = t5_layers.RelativePositionBias(dims, bidirectional=True)
    table = np.arange(dims.num_heads * 32, dtype=np.float32).reshape(dims.num_heads, 32)
    bias = np.asarray(module.apply({"params": {"rel_embedding": table}}, 3, 5))
    assert bias.shape == (1, dims.num_heads, 3, 5)
    # query 2, key 0: relative -2 -> bucket 2; query 0, key 4: relative +4 -> bucket 20.
    np.testing.assert_array_equal(bias[0, :, 2, 0], table[:, 2])
    np.testing.assert_array_equal(bias[0, :, 0, 4], table[:, 20])


def test_layer_context_take_keeps_true_positions():
    bias = jnp.arange(36.0).reshape(1, 1, 6, 6)
    memory_bias = jnp.arange(12.0).reshape(1, 1, 6, 2)
    context = t5_layers.LayerContext(bias, jnp.zeros((1, 2, 4)), memory_bias).take(np.array([1, 4]))
    np.testing.assert_array_equal(context.self_bias[0, 0], [[7.0, 10.0], [25.0, 28.0]])
    np.testing.assert_array_equal(context.memory_bias[0, 0], [[2.0, 3.0], [8.0, 9.0]])
    broadcast = t5_layers.LayerContext(bias, None, jnp.ones((1, 1, 1, 2))).take(np.array([0]))
    assert broadcast.memory_bias.shape == (1, 1, 1, 2)


# --- layers against NumPy ---------------------------------------------------------------


def test_rmsnorm_matches_numpy():
    x = np.random.default_rng(1).normal(size=(2, 3, 8)).astype(np.float32) * 3
    scale = np.linspace(0.5, 2.0, 8).astype(np.float32)
    got = t5_layers.RMSNorm().apply({"params": {"scale": scale}}, jnp.asarray(x))
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_attention_is_unscaled_and_query_init_carries_the_scale():
    dims = t5_layers.dims_from_config(tiny_config(d_model=64, num_heads=4, d_kv=32), VOCAB)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 5, 64)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(1, 4, 5, 5)), jnp.float32)
    module = t5_layers.MultiHeadAttention(dims)
    params = nn.meta.unbox(module.init(jax.random.key(3), x, x, bias, train=False))["params"]
    assert set(params) == {"query", "key", "value", "out"}
    assert all(set(p) == {"kernel"} for p in params.values())  # no biases
    q_std = float(np.std(params["query"]["kernel"]))
    k_std = float(np.std(params["key"]["kernel"]))
    np.testing.assert_allclose(q_std, 1 / math.sqrt(64 * 32), rtol=0.1)
    np.testing.assert_allclose(k_std, 1 / math.sqrt(64), rtol=0.1)

    got = module.apply({"params": params}, x, x, bias, train=False)
    xn = np.asarray(x)
    q = np.einsum("bld,dhk->blhk", xn, params["query"]["kernel"])
    k = np.einsum("bld,dhk->blhk", xn, params["key"]["kernel"])
    v = np.einsum("bld,dhk->blhk", xn, params["value"]["kernel"])
    logits = np.einsum("bqhk,bshk->bhqs", q, k) + np.asarray(bias)  # no 1/sqrt(d_kv)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    expected = np.einsum(
        "hkd,bqhk->bqd", params["out"]["kernel"], np.einsum("bhqs,bshk->bqhk", w, v)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_gated_gelu_mlp_matches_numpy():
    dims = t5_layers.dims_from_config(tiny_config(), VOCAB)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 3, 24)), jnp.float32)
    module = t5_layers.GatedGeluMlp(dims)
    params = nn.meta.unbox(module.init(jax.random.key(5), x, train=False))["params"]
    p = jax.tree.map(np.asarray, params)
    h0 = np.asarray(x) @ p["wi_0"]["kernel"]
    gelu = 0.5 * h0 * (1 + np.tanh(math.sqrt(2 / math.pi) * (h0 + 0.044715 * h0**3)))
    expected = (gelu * (np.asarray(x) @ p["wi_1"]["kernel"])) @ p["wo"]["kernel"]
    got = module.apply({"params": params}, x, train=False)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# --- the whole model ------------------------------------------------------------------------


def dense_param_count(v, d, ff, h, kv, n_enc, n_dec, buckets=32) -> int:
    attention = 4 * d * h * kv
    mlp = 3 * d * ff
    encoder = n_enc * (2 * d + attention + mlp) + d + h * buckets
    decoder = n_dec * (3 * d + 2 * attention + mlp) + d + h * buckets + d * v
    return v * d + encoder + decoder


def test_parameter_count_and_structure(model_and_params):
    _, params = model_and_params
    count = sum(x.size for x in jax.tree.leaves(params))
    assert count == dense_param_count(VOCAB, 24, 40, 3, 5, 2, 3)
    names = [
        "/".join(str(k.key) for k in path)
        for path, _ in jax.tree_util.tree_leaves_with_path(params)
    ]
    assert not any(name.endswith("bias") for name in names)
    # One relative position table per stack, shared by its layers.
    assert sorted(n for n in names if "rel_embedding" in n) == [
        "decoder/relpos_bias/rel_embedding",
        "encoder/relpos_bias/rel_embedding",
    ]
    # Untied: a separate output projection next to the shared input embedding.
    assert params["decoder"]["logits_dense"]["kernel"].shape == (24, VOCAB)
    assert params["token_embedding"]["embedding"].shape == (VOCAB, 24)


def test_sizes_and_overrides():
    config = t5_model.T5Model.default_config()
    assert config.size == "small"
    small = t5_layers.dims_from_config(config, 32128)
    assert (small.d_model, small.d_ff, small.num_heads, small.d_kv) == (512, 1024, 6, 64)
    assert (small.num_encoder_layers, small.num_decoder_layers) == (8, 8)
    config.size = "large"
    config.num_layers = 4
    config.num_decoder_layers = 2
    large = t5_layers.dims_from_config(config, 100)
    assert (large.d_model, large.d_ff, large.num_heads) == (1024, 2816, 16)
    assert (large.num_encoder_layers, large.num_decoder_layers) == (4, 2)
    config.size = "huge"
    with pytest.raises(ConfigError, match="model.size"):
        t5_layers.dims_from_config(config, 100)


def test_vocab_size_from_dataset_meta():
    config = tiny_config(vocab_size=None)
    assert t5_model.T5Model(config, {"vocab_size": 77}).vocab_size == 77
    with pytest.raises(ConfigError, match="vocab_size"):
        t5_model.T5Model(config, {})


def test_decoder_is_causal(model_and_params):
    model, params = model_and_params
    batch = make_batch()
    base = logits_of(model, params, batch)
    j = 3  # change target token j: decoder input j + 1 changes
    tgt = np.asarray(batch["decoder_target_tokens"]).copy()
    tgt[:, j] = tgt[:, j] % (VOCAB - 1) + 1
    changed = dict(batch)
    changed["decoder_target_tokens"] = jnp.asarray(tgt)
    changed["decoder_input_tokens"] = jnp.asarray(
        np.concatenate([np.zeros((2, 1), tgt.dtype), tgt[:, :-1]], axis=1)
    )
    after = logits_of(model, params, changed)
    np.testing.assert_allclose(after[:, : j + 1], base[:, : j + 1], atol=1e-5)
    assert np.abs(after[0, j + 1 :] - base[0, j + 1 :]).max() > 1e-3


def test_padding_does_not_change_real_outputs(model_and_params):
    model, params = model_and_params
    batch = make_batch()
    base = logits_of(model, params, batch)
    padded = dict(batch)
    padded["encoder_input_tokens"] = jnp.pad(batch["encoder_input_tokens"], ((0, 0), (0, 5)))
    for key in ("decoder_input_tokens", "decoder_target_tokens"):
        padded[key] = jnp.pad(batch[key], ((0, 0), (0, 4)))
    after = logits_of(model, params, padded)
    np.testing.assert_allclose(after[:, :7], base, atol=1e-5)


def test_dropout_is_used_in_training():
    config = tiny_config(dropout_rate=0.5, num_encoder_layers=1, num_decoder_layers=1)
    model = t5_model.T5Model(config, {})
    batch = make_batch()
    params = model.init(jax.random.key(0), batch)
    run = jax.jit(lambda rng: model.apply(params, batch, train=True, rng=rng)[0])
    a, b = run(jax.random.key(1)), run(jax.random.key(2))
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3


# --- loss and metrics --------------------------------------------------------------------------


def numpy_metrics(logits, targets, z_loss):
    logits = logits.astype(np.float64)
    log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    log_p = np.take_along_axis(logits, targets[..., None], -1)[..., 0] - log_z
    weights = targets > 0
    ce = np.where(weights, -log_p, 0.0).sum(-1)
    z = np.where(weights, z_loss * log_z**2, 0.0).sum(-1)
    correct = np.where(weights, logits.argmax(-1) == targets, 0).sum(-1)
    return ce, z, correct, weights.sum(-1)


def test_loss_matches_numpy_and_ignores_padding():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(3, 6, 11)).astype(np.float32) * 2
    targets = rng.integers(1, 11, (3, 6))
    targets[0, 4:] = 0
    targets[2, :] = 0  # an example with no targets
    metrics = t5_model.seq2seq_metrics(jnp.asarray(logits), jnp.asarray(targets), z_loss=1e-2)
    ce, z, correct, count = numpy_metrics(logits, targets, 1e-2)
    np.testing.assert_allclose(metrics["cross_entropy"][0], ce, rtol=1e-5)
    np.testing.assert_allclose(metrics["z_loss"][0], z, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"][0], ce + z, rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"][0], correct)
    for name in ("loss", "cross_entropy", "accuracy"):
        np.testing.assert_array_equal(metrics[name][1], count)
    np.testing.assert_array_equal(count, [4, 6, 0])
    # Logits at padded target positions change nothing.
    noisy = logits.copy()
    noisy[targets == 0] += rng.normal(size=noisy[targets == 0].shape).astype(np.float32) * 50
    again = t5_model.seq2seq_metrics(jnp.asarray(noisy), jnp.asarray(targets), z_loss=1e-2)
    for name in metrics:
        np.testing.assert_allclose(again[name][0], metrics[name][0], rtol=1e-6)


def test_sequence_accuracy_counts_whole_sequences():
    targets = np.array([[3, 4, 0], [1, 2, 2], [0, 0, 0]])
    logits = np.full((3, 3, 5), -5.0, np.float32)
    for b, t in np.ndindex(3, 3):
        logits[b, t, targets[b, t]] = 5.0
    logits[0, 2, 1] = 20.0  # wrong only at a padded position: still all correct
    logits[1, 1, 0] = 20.0  # one real token wrong
    metrics = t5_model.seq2seq_metrics(jnp.asarray(logits), jnp.asarray(targets))
    np.testing.assert_array_equal(metrics["sequence_accuracy"][0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(metrics["sequence_accuracy"][1], [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(metrics["accuracy"][0], [2.0, 2.0, 0.0])


def test_label_smoothing_matches_numpy():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(2, 4, 6)).astype(np.float32)
    targets = rng.integers(1, 6, (2, 4))
    metrics = t5_model.seq2seq_metrics(
        jnp.asarray(logits), jnp.asarray(targets), label_smoothing=0.1
    )
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    soft = np.full(logits.shape, 0.1 / 5)
    np.put_along_axis(soft, targets[..., None], 0.9, -1)
    min_entropy = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1 / 5))
    expected = (-(soft * log_p).sum(-1) - min_entropy).sum(-1)
    np.testing.assert_allclose(metrics["cross_entropy"][0], expected, rtol=1e-5)


def test_model_metrics_use_decoder_targets(model_and_params):
    model, params = model_and_params
    batch = make_batch()
    logits, aux = model.apply(params, batch, train=False)
    assert logits.shape == (2, 7, VOCAB) and logits.dtype == jnp.float32
    metrics = model.metrics(logits, batch)
    ce, _, _, count = numpy_metrics(
        np.asarray(logits), np.asarray(batch["decoder_target_tokens"]), 0
    )
    np.testing.assert_allclose(metrics["cross_entropy"][0], ce, rtol=1e-4)
    np.testing.assert_array_equal(metrics["loss"][1], [7, 5])


def test_packed_sequence_accuracy_counts_each_example():
    targets = np.array([[3, 4, 2, 2, 1, 0], [5, 5, 5, 0, 0, 0]])
    segments = np.array([[1, 1, 2, 2, 3, 0], [1, 1, 1, 0, 0, 0]])
    logits = np.asarray(jax.nn.one_hot(targets, 6)) * 10
    logits[0, 2] = 0.0  # example 2 of row 0 is wrong
    logits[0, 2, 5] = 10.0
    metrics = t5_model.seq2seq_metrics(
        jnp.asarray(logits), jnp.asarray(targets), segment_ids=jnp.asarray(segments)
    )
    np.testing.assert_array_equal(metrics["sequence_accuracy"][0], [2.0, 1.0])
    np.testing.assert_array_equal(metrics["sequence_accuracy"][1], [3.0, 1.0])
