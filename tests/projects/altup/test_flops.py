"""AltUp's analytical FLOPs: against XLA's count of the compiled forward pass, and the
differences from dense T5 that hold by construction."""

from __future__ import annotations

import jax
import pytest

from configs.altup import t5 as t5_config
from framework.models import flops
from framework.models.t5 import model as t5_model
from projects.altup.model import T5AltUpModel
from tests.framework.models.test_flops import t5_batch, xla_ratio

# Moderate widths (elementwise work a small share of XLA's count), a small vocabulary.
WIDTHS = dict(vocab_size=256, d_model=256, d_ff=512, num_heads=4, d_kv=64)
LAYERS = dict(num_encoder_layers=2, num_decoder_layers=2)
INPUTS, TARGETS = 64, 32


def make_model(variant: str, **altup) -> T5AltUpModel:
    config = T5AltUpModel.default_config()
    config.update(size="tiny", **WIDTHS, **LAYERS)
    config.altup.variant = variant
    config.altup.update(altup)
    return T5AltUpModel(config, {})


def count(model: T5AltUpModel, inputs: int = INPUTS, targets: int = TARGETS) -> float:
    batch = t5_batch(inputs=inputs, targets=targets)
    return model.analytical_flops(jax.eval_shape(model.init, jax.random.key(0), batch), batch)


@pytest.mark.parametrize(
    "variant, altup", [("altup", dict(k=2)), ("sequence", dict(sequence_stride=2))]
)
def test_matches_xla(variant, altup):
    ratio = xla_ratio(make_model(variant, **altup), t5_batch(inputs=INPUTS, targets=TARGETS))
    assert 1.0 <= ratio < 1.1  # observed 1.007 (AltUp K=2), 1.009 (Sequence-AltUp)


@pytest.mark.parametrize("k", [2, 3])
def test_altup_adds_mixing_and_a_wider_readout(k):
    d, vocab = WIDTHS["d_model"], WIDTHS["vocab_size"]
    positions = LAYERS["num_encoder_layers"] * INPUTS + LAYERS["num_decoder_layers"] * TARGETS
    mixing = 2 * (k * k + k) * d * positions  # predict (K x K) and correct (K), per position
    readout = 2 * (k - 1) * d * vocab * TARGETS  # logits from K*d instead of d
    dense = count(make_model("none"))
    assert count(make_model("altup", k=k)) == dense + mixing + readout
    assert count(make_model("altup", k=k, readout="sum")) == dense + mixing
    assert count(make_model("recycled", k=k)) == dense + mixing


def test_sequence_layers_compute_every_sth_position():
    model = make_model("sequence", sequence_stride=3)
    positions = lambda index: model.layer_flops("encoder", index, 7, lambda n: n)  # noqa: E731
    # 7 positions, stride 3: layer 0 computes 0, 3, 6; layer 1: 1, 4; layer 2: 2, 5.
    assert [positions(i) for i in range(4)] == [3, 2, 2, 3]
    assert count(make_model("sequence", sequence_stride=1)) == count(make_model("none"))


def test_twice_wide_dense_has_four_times_the_kernels():
    """`dense,width=2`: d_model, d_ff and heads doubled (d_kv kept), so every kernel has
    4x the entries and attention is 2x as wide."""
    dims = {}
    for width in (1, 2):
        config = t5_config.get_config(f"tiny,dense,width={width},data=random").model
        dims[width] = t5_model.T5Model(config, {"vocab_size": 100}).dims()
    n = 16
    d, inner, ff = dims[1].d_model, dims[1].num_heads * dims[1].d_kv, dims[1].d_ff
    kernels = flops.dense(4 * d * inner + 3 * d * ff, n)
    attention = flops.attention(n, n, inner)
    assert t5_model.encoder_layer_flops(dims[1], n) == kernels + attention
    assert t5_model.encoder_layer_flops(dims[2], n) == 4 * kernels + 2 * attention
