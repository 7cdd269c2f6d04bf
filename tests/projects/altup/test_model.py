"""T5 with AltUp variants: parameter counts, equivalences with dense T5, causality."""

from __future__ import annotations

import dataclasses

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.config import fields
from framework.errors import ConfigError
from framework.models.t5 import model as t5_model
from framework.models.t5 import stack as t5_stack
from projects.altup import adapters
from projects.altup.model import T5AltUpModel

VOCAB, D, FF, HEADS, KV, N_ENC, N_DEC = 40, 16, 32, 2, 8, 2, 3


def make_model(variant: str, **altup) -> T5AltUpModel:
    config = T5AltUpModel.default_config()
    config.size = "tiny"
    config.vocab_size = VOCAB
    config.d_model, config.d_ff, config.num_heads, config.d_kv = D, FF, HEADS, KV
    config.num_encoder_layers, config.num_decoder_layers = N_ENC, N_DEC
    config.altup.variant = variant
    for key, value in altup.items():
        config.altup[key] = value
    return T5AltUpModel(config, {})


def make_batch(seed: int = 0, inputs: int = 8, targets: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    enc = rng.integers(1, VOCAB, (2, inputs))
    enc[1, -2:] = 0
    tgt = rng.integers(1, VOCAB, (2, targets))
    return with_targets({"encoder_input_tokens": jnp.asarray(enc, jnp.int32)}, tgt)


def with_targets(batch: dict, targets: np.ndarray) -> dict:
    batch = dict(batch)
    batch["decoder_target_tokens"] = jnp.asarray(targets, jnp.int32)
    batch["decoder_input_tokens"] = jnp.asarray(
        np.concatenate([np.zeros((targets.shape[0], 1), targets.dtype), targets[:, :-1]], 1),
        jnp.int32,
    )
    batch["mask"] = jnp.ones((targets.shape[0],), jnp.float32)
    return batch


def count(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


def count_of(model) -> int:
    """Parameter count from shapes alone (no initialisation runs)."""
    return count(jax.eval_shape(model.init, jax.random.key(0), make_batch()))


def logits_of(model, params, batch) -> np.ndarray:
    return np.asarray(model.apply(params, batch, train=False)[0])


@pytest.fixture(scope="module")
def dense():
    model = make_model("none")
    return model, model.init(jax.random.key(0), make_batch())


def test_dense_variant_is_plain_t5(dense):
    model, params = dense
    plain = t5_model.T5Model(model.config, {})
    shapes = jax.eval_shape(plain.init, jax.random.key(0), make_batch())
    assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(jnp.shape, params)


@pytest.mark.parametrize("k", [2, 3])
def test_parameter_counts_follow_the_formulas(dense, k):
    dense_count = count(dense[1])
    layers = N_ENC + N_DEC
    recycled = count_of(make_model("recycled", k=k))
    assert recycled - dense_count == (k * k + k) * layers
    altup = count_of(make_model("altup", k=k))
    # (K-1)d more embedding columns, decoder final norm and output projection rows.
    assert altup - dense_count == (k * k + k) * layers + (k - 1) * D * (2 * VOCAB + 1)
    altup_sum = count_of(make_model("altup", k=k, readout="sum"))
    # Only the embedding is wider: the final norm and output projection stay d wide.
    assert altup_sum - dense_count == (k * k + k) * layers + (k - 1) * D * VOCAB
    sequence = count_of(make_model("sequence", sequence_stride=k))
    assert sequence - dense_count == 3 * (k - 1) * layers


def wrapped_from_dense(dense_params, wrapped_params):
    """Wrapped params whose inner layers are the dense ones (same everything else)."""
    out = jax.tree.map(lambda x: x, flax.core.unfreeze(wrapped_params))
    dense_params = jax.tree.map(lambda x: x, flax.core.unfreeze(dense_params))  # a copy
    for stack in ("encoder", "decoder"):
        for name, value in dense_params[stack].items():
            if name.startswith("layers_"):
                out[stack][name]["layer"] = value
            else:
                out[stack][name] = value
    out["token_embedding"] = dense_params["token_embedding"]
    return out


def test_recycled_at_init_computes_what_dense_computes(dense):
    model, params = dense
    batch = make_batch()
    recycled = make_model("recycled", k=2)
    wrapped = wrapped_from_dense(params, recycled.init(jax.random.key(1), batch))
    # Identical blocks stay identical (p = I, g = 1): their sum is 2x the dense state,
    # which the final RMSNorm cancels.
    np.testing.assert_allclose(
        logits_of(recycled, wrapped, batch), logits_of(model, params, batch), rtol=1e-4, atol=1e-4
    )


def test_altup_with_copied_embedding_computes_what_dense_computes(dense):
    model, params = dense
    batch = make_batch()
    altup = make_model("altup", k=2)
    wrapped = wrapped_from_dense(params, altup.init(jax.random.key(1), batch))
    embedding = params["token_embedding"]["embedding"]
    wrapped["token_embedding"]["embedding"] = jnp.concatenate([embedding, embedding], -1)
    scale = params["decoder"]["final_norm"]["scale"]
    wrapped["decoder"]["final_norm"]["scale"] = jnp.concatenate([scale, scale])
    kernel = params["decoder"]["logits_dense"]["kernel"]
    wrapped["decoder"]["logits_dense"]["kernel"] = jnp.concatenate(
        [kernel, jnp.zeros_like(kernel)], 0
    )
    np.testing.assert_allclose(
        logits_of(altup, wrapped, batch), logits_of(model, params, batch), rtol=1e-4, atol=1e-4
    )
    # Changing the second half of the output projection now changes the logits: the
    # decoder output really is the K*d-wide concatenation.
    wrapped["decoder"]["logits_dense"]["kernel"] = jnp.concatenate([kernel, kernel], 0)
    assert np.abs(logits_of(altup, wrapped, batch) - logits_of(model, params, batch)).max() > 0.1


def test_altup_sum_readout_with_copied_embedding_computes_what_dense_computes(dense):
    model, params = dense
    batch = make_batch()
    altup = make_model("altup", k=2, readout="sum")
    wrapped = wrapped_from_dense(params, altup.init(jax.random.key(1), batch))
    embedding = params["token_embedding"]["embedding"]
    wrapped["token_embedding"]["embedding"] = jnp.concatenate([embedding, embedding], -1)
    # Equal blocks sum to twice the dense state, which the d-wide final RMSNorm cancels.
    np.testing.assert_allclose(
        logits_of(altup, wrapped, batch), logits_of(model, params, batch), rtol=1e-4, atol=1e-4
    )
    # With different halves the sum is what reaches the norm: not the dense output.
    wrapped["token_embedding"]["embedding"] = jnp.concatenate([embedding, -0.5 * embedding], -1)
    assert np.abs(logits_of(altup, wrapped, batch) - logits_of(model, params, batch)).max() > 0.1


def test_sequence_stride_one_is_dense(dense):
    model, params = dense
    batch = make_batch()
    sequence = make_model("sequence", sequence_stride=1)
    wrapped = wrapped_from_dense(params, sequence.init(jax.random.key(1), batch))
    np.testing.assert_allclose(
        logits_of(sequence, wrapped, batch), logits_of(model, params, batch), atol=1e-5
    )


@pytest.mark.parametrize(
    "variant,altup",
    [
        ("altup", {"k": 2}),
        ("recycled", {"k": 3, "active": "same"}),
        ("sequence", {"sequence_stride": 2}),
        ("sequence", {"sequence_stride": 3}),
    ],
)
def test_decoder_stays_causal(variant, altup):
    model = make_model(variant, **altup)
    batch = make_batch(targets=9)
    params = model.init(jax.random.key(0), batch)
    # Random wrapper scalars, so that causality does not rest on the init values.
    leaves = jax.tree_util.tree_leaves_with_path(params)
    rng = np.random.default_rng(0)
    scalars = {"predict", "correct", "own", "anchor"}

    def randomise(path, x):
        return jnp.asarray(rng.normal(size=x.shape), x.dtype) if path[-1].key in scalars else x

    params = jax.tree_util.tree_map_with_path(randomise, params)
    assert any(path[-1].key in scalars for path, _ in leaves)
    base = logits_of(model, params, batch)
    for j in (2, 5):
        targets = np.asarray(batch["decoder_target_tokens"]).copy()
        targets[:, j] = targets[:, j] % (VOCAB - 1) + 1
        after = logits_of(model, params, with_targets(batch, targets))
        np.testing.assert_allclose(after[:, : j + 1], base[:, : j + 1], atol=1e-5)
        assert np.abs(after[:, j + 1 :] - base[:, j + 1 :]).max() > 1e-4


def test_model_active_blocks_alternate_by_layer():
    """Inside the model, layer i's inner layer reads block i mod K of its input."""
    k = 2
    model = make_model("altup", k=k)
    batch = make_batch()
    params = model.init(jax.random.key(0), batch)
    _, state = model.module.apply(
        {"params": params},
        **model.module_inputs(batch),
        train=False,
        capture_intermediates=True,
        mutable=["intermediates"],
    )
    encoder = state["intermediates"]["encoder"]
    embedded = np.asarray(params["token_embedding"]["embedding"])[
        np.asarray(batch["encoder_input_tokens"])
    ]
    previous = np.stack(np.split(embedded, k, axis=-1))
    scale = np.asarray(params["encoder"]["layers_0"]["layer"]["pre_attention_norm"]["scale"])
    for i in range(N_ENC):
        normed = encoder[f"layers_{i}"]["layer"]["pre_attention_norm"]["__call__"][0]
        for block in range(k):
            ref = previous[block] / np.sqrt((previous[block] ** 2).mean(-1, keepdims=True) + 1e-6)
            matches = np.allclose(normed, ref * scale, atol=1e-4)
            assert matches == (block == i % k), (i, block)
        previous = np.asarray(encoder[f"layers_{i}"]["__call__"][0])


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("variant", "wide", "model.altup.variant must be one of"),
        ("active", "random", "model.altup.active must be one of"),
        ("k", 0, "model.altup.k must be positive, got 0"),
        ("compute_input", "mixed", "model.altup.compute_input must be one of"),
        ("readout", "mean", "model.altup.readout must be one of"),
        ("sequence_stride", 0, "model.altup.sequence_stride must be positive"),
    ],
)
def test_bad_altup_config_is_a_one_line_error(field, value, message):
    config = T5AltUpModel.default_config().altup
    config[field] = value
    with pytest.raises(ConfigError, match=message):
        fields.build(adapters.AltUpSettings, config)
    with pytest.raises(ConfigError, match=message):
        make_model(**{"variant": "altup", field: value})


def test_altup_config_is_declared_by_the_settings():
    config = T5AltUpModel.default_config().altup
    defaults = adapters.AltUpSettings()
    assert config.to_dict() == dataclasses.asdict(defaults)
    assert fields.build(adapters.AltUpSettings, config) == defaults
    assert set(adapters.VARIANTS) == {"none", "altup", "recycled", "sequence"}
    for variant, adapter_cls in adapters.VARIANTS.items():
        adapter = adapters.AltUpSettings(variant=variant).adapter()
        assert type(adapter) is (t5_stack.StackAdapter if variant == "none" else adapter_cls)


def test_grads_reach_the_altup_scalars():
    model = make_model("altup", k=2)
    batch = make_batch()
    params = model.init(jax.random.key(0), batch)

    def loss(p):
        logits = model.apply(p, batch, train=False)[0]
        num, den = model.metrics(logits, batch)["loss"]
        return num.sum() / den.sum()

    grads = jax.jit(jax.grad(loss))(params)
    for stack in ("encoder", "decoder"):
        assert np.abs(grads[stack]["layers_1"]["predict"]).max() > 0
        assert np.abs(grads[stack]["layers_1"]["correct"]).max() > 0


def packed_and_separate(rng: np.random.Generator, lengths: list[tuple[int, int]], width: tuple):
    """Examples packed into one row, and the same examples one per row (padded)."""
    li, lt = width
    rows = {k: np.zeros((len(lengths) + 1, n), np.int32) for k, n in (("enc", li), ("tgt", lt))}
    segs = {k: np.zeros((1, n), np.int32) for k, n in (("enc", li), ("tgt", lt))}
    starts = {"enc": 0, "tgt": 0}
    dec_in = np.zeros((len(lengths) + 1, lt), np.int32)
    for i, (n_in, n_tgt) in enumerate(lengths):
        for key, n in (("enc", n_in), ("tgt", n_tgt)):
            tokens = rng.integers(1, VOCAB, n)
            start = starts[key]
            rows[key][0, start : start + n] = tokens
            rows[key][i + 1, :n] = tokens
            segs[key][0, start : start + n] = i + 1
            starts[key] += n
        tgt_start = starts["tgt"] - n_tgt
        dec_in[0, tgt_start + 1 : starts["tgt"]] = rows["tgt"][0, tgt_start : starts["tgt"] - 1]
        dec_in[i + 1, 1:n_tgt] = rows["tgt"][i + 1, : n_tgt - 1]
    packed = {
        "encoder_input_tokens": jnp.asarray(rows["enc"][:1]),
        "decoder_input_tokens": jnp.asarray(dec_in[:1]),
        "decoder_target_tokens": jnp.asarray(rows["tgt"][:1]),
        "encoder_segment_ids": jnp.asarray(segs["enc"]),
        "decoder_segment_ids": jnp.asarray(segs["tgt"]),
        "mask": jnp.ones((1,), jnp.float32),
    }
    separate = {
        "encoder_input_tokens": jnp.asarray(rows["enc"][1:]),
        "decoder_input_tokens": jnp.asarray(dec_in[1:]),
        "decoder_target_tokens": jnp.asarray(rows["tgt"][1:]),
        "mask": jnp.ones((len(lengths),), jnp.float32),
    }
    return packed, separate


@pytest.mark.parametrize(
    "variant,altup",
    [("none", {}), ("altup", {"k": 2}), ("sequence", {"sequence_stride": 3})],
)
def test_packed_rows_compute_what_separate_rows_compute(variant, altup):
    # Example lengths are multiples of the stride, so Sequence-AltUp's computed
    # positions fall at the same offsets inside each example either way.
    lengths = [(6, 6), (9, 3)]
    packed, separate = packed_and_separate(np.random.default_rng(5), lengths, (18, 12))
    model = make_model(variant, **altup)
    params = model.init(jax.random.key(0), packed)
    one_row = logits_of(model, params, packed)[0]
    per_row = logits_of(model, params, separate)
    np.testing.assert_allclose(one_row[:6], per_row[0, :6], atol=1e-4)
    np.testing.assert_allclose(one_row[6:9], per_row[1, :3], atol=1e-4)
    # The packed row's metrics count both examples' tokens and sequences.
    metrics = model.metrics(jnp.asarray(one_row[None]), packed)
    assert float(metrics["accuracy"][1][0]) == 9
    assert float(metrics["sequence_accuracy"][1][0]) == 2
