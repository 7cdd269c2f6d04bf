"""Every AltUp variant at scale: logical names on every parameter (the predict / correct
scalars, the K*d-wide embedding and readout), bfloat16 compute, rematerialisation
(also under cached decoding). Variants are selected as `configs/altup/t5.py` does."""

from __future__ import annotations

import functools

import ml_collections
import pytest

from configs.altup import t5 as t5_config
from framework.models import partitioning as pt
from projects.altup.model import T5AltUpModel
from tests.framework.models import test_decoding
from tests.framework.models import test_t5_scale as scale
from tests.projects.altup.test_model import make_batch

VOCAB, D, FF, HEADS, KV, N_ENC, N_DEC = 40, 16, 32, 2, 8, 1, 2

# The configs/altup/t5.py argument of each variant (after `tiny,`).
VARIANTS = {
    "dense": "dense",
    "altup_k2_concat": "altup,k=2",
    "altup_k3_sum": "altup,k=3,readout=sum",
    "altup_predicted_same": "altup,compute=predicted,active=same",
    "recycled": "recycled,k=2",
    "sequence": "sequence,stride=3",
}


def variant_config(name: str, **fields) -> ml_collections.ConfigDict:
    """The model config `configs/altup/t5.py:tiny,<variant>` builds, at test sizes."""
    config = t5_config.get_config(f"tiny,{VARIANTS[name]},data=random").model
    config.vocab_size = VOCAB
    config.d_model, config.d_ff, config.num_heads, config.d_kv = D, FF, HEADS, KV
    config.num_encoder_layers, config.num_decoder_layers = N_ENC, N_DEC
    for key, value in fields.items():
        config[key] = value
    return config


def model_of(name: str, **fields) -> T5AltUpModel:
    return T5AltUpModel(variant_config(name, **fields), {})


@functools.lru_cache(maxsize=None)
def params_of(name: str):
    """The float32 parameters of variant `name` (shared by the tests below)."""
    return scale.init(model_of(name), make_batch())


@pytest.mark.parametrize("name", VARIANTS)
def test_every_parameter_has_its_logical_names(name):
    config = variant_config(name)
    model = T5AltUpModel(config, {})
    axes = scale.assert_all_annotated(model, make_batch())
    shapes = scale.param_shapes(model, make_batch())
    altup = config.altup
    k = altup.k if altup.variant in ("altup", "recycled") else 1
    wide = altup.k if altup.variant == "altup" else 1  # the embedding's K*d width
    readout = wide if altup.readout == "concat" else 1  # the decoder output's width
    expected = {
        ("token_embedding", "embedding"): ((pt.VOCAB, pt.EMBED), (VOCAB, wide * D)),
        ("decoder", "final_norm", "scale"): ((pt.EMBED,), (readout * D,)),
        ("decoder", "logits_dense", "kernel"): ((pt.EMBED, pt.VOCAB), (readout * D, VOCAB)),
        ("encoder", "final_norm", "scale"): ((pt.EMBED,), (D,)),
    }
    for stack, layers in (("encoder", N_ENC), ("decoder", N_DEC)):
        for i in range(layers):
            layer = (stack, f"layers_{i}")
            if altup.variant in ("altup", "recycled"):
                expected[layer + ("predict",)] = ((pt.SUBBLOCKS, pt.SUBBLOCKS), (k, k))
                expected[layer + ("correct",)] = ((pt.SUBBLOCKS,), (k,))
                layer += ("layer",)
            elif altup.variant == "sequence":
                for scalar in ("own", "anchor", "correct"):
                    stride = altup.sequence_stride
                    expected[layer + (scalar,)] = ((pt.SUBBLOCKS,), (stride - 1,))
                layer += ("layer",)
            expected[layer + ("mlp", "wi_0", "kernel")] = ((pt.EMBED, pt.MLP), (D, FF))
            expected[layer + ("mlp", "wo", "kernel")] = ((pt.MLP, pt.EMBED), (FF, D))
            attention = "attention" if stack == "encoder" else "encoder_decoder_attention"
            query = layer + (attention, "query", "kernel")
            expected[query] = ((pt.EMBED, pt.HEADS, pt.KV), (D, HEADS, KV))
            out = layer + (attention, "out", "kernel")
            expected[out] = ((pt.HEADS, pt.KV, pt.EMBED), (HEADS, KV, D))
    for path, (names, shape) in expected.items():
        assert (axes[path], shapes[path]) == (names, shape), path
    altup_params = [path for path, names in axes.items() if pt.SUBBLOCKS in names]
    num_scalar_sets = 0 if altup.variant == "none" else N_ENC + N_DEC
    assert len(altup_params) == num_scalar_sets * (3 if altup.variant == "sequence" else 2)


# Recycled-AltUp shares AltUp's wrapper class; Sequence-AltUp has its own.
@pytest.mark.parametrize("name", ["altup_k2_concat", "sequence"])
def test_remat_block_gives_the_same_loss_and_gradients(name):
    """The whole wrapper (AltUp: predict, layer, correct; Sequence-AltUp: strided layer
    and scalars) is one rematerialised call per layer; dropout masks do not change
    either. (Other AltUp settings use the same wrapper class.)"""
    config = variant_config(name, dropout_rate=0.1)
    scale.assert_remat_matches(T5AltUpModel, config, make_batch(), N_ENC + N_DEC, params_of(name))


@pytest.mark.parametrize("name", ["altup_k3_sum", "sequence"])
def test_bf16_first_loss_is_close_to_float32(name):
    scale.assert_bf16_first_loss_close(
        T5AltUpModel, variant_config(name), make_batch(), params_of(name)
    )


def test_cached_decoding_under_remat_block():
    """Rematerialised AltUp layers still fill and read the key/value cache: cached
    greedy = uncached greedy = the teacher-forced argmax."""
    config = test_decoding.tiny_config(T5AltUpModel)
    config.altup.variant, config.altup.k, config.remat = "altup", 2, "block"
    model = T5AltUpModel(config, {})
    params = test_decoding.init_params(model, seed=1)
    test_decoding.check_greedy(test_decoding.decoded(model.module, params))
