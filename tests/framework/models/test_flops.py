"""Analytical forward FLOPs (`BaseModel.analytical_flops`): hand counts, XLA's count of
the compiled forward pass, and a count for every registered model."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from framework.config import registry
from framework.config.loader import load_config
from framework.models import base, flops
from framework.models.t5 import model as t5_model
from framework.models.transformer import TransformerClassifier
from framework.models.vit import ViTClassifier
from framework.train import cost
from framework.train.experiment import build_experiment

S = jax.ShapeDtypeStruct


def image_batch(batch: int, size: int) -> dict:
    return {"inputs": S((batch, size, size, 3), jnp.float32), "label": S((batch,), jnp.int32)}


def vit(num_classes: int = 10, **fields) -> ViTClassifier:
    config = ViTClassifier.default_config()
    config.update(fields)
    return ViTClassifier(config, {"num_classes": num_classes})


def abstract_params(model: base.BaseModel, batch: dict):
    return jax.eval_shape(model.init, jax.random.key(0), batch)


def test_tiny_vit_by_hand():
    model = vit(hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, patch_size=4)
    batch = image_batch(2, 8)
    # 8x8 images, 4x4 patches: 4 patches, plus the class token (pooling 'token'): 5 tokens.
    stem = 2 * (4 * 4 * 3 * 16) * 4  # conv kernel 768 entries at 4 positions = 6144
    kernels = 2 * (4 * 16 * 16 + 2 * 16 * 32) * 5  # q, k, v, out + fc1, fc2 on 5 tokens = 20480
    attention = 4 * 5 * 5 * 16  # scores and weighted sum, 5 x 5 at width 16 = 1600
    head = 2 * 16 * 10  # on the pooled token = 320
    assert stem + kernels + attention + head == 28544
    assert model.analytical_flops(abstract_params(model, batch), batch) == 28544


def test_token_lookup_costs_nothing():
    config = TransformerClassifier.default_config()
    config.update(hidden_size=8, num_layers=1, num_heads=2, mlp_dim=16, vocab_size=11)
    model = TransformerClassifier(config, {"num_classes": 3})
    batch = {"inputs": S((2, 6), jnp.int32), "label": S((2,), jnp.int32)}
    # gap pooling: 6 tokens; kernels 4*8*8 + 2*8*16 = 512; the lookup is not a matmul.
    expected = 2 * 512 * 6 + 4 * 6 * 6 * 8 + 2 * 8 * 3
    assert model.analytical_flops(abstract_params(model, batch), batch) == expected == 7344


def test_helpers_find_kernels_and_attention():
    tree = {
        "attn": {k: {"kernel": S((4, 2, 3), jnp.float32)} for k in ("query", "key", "value")},
        "mlp": {"kernel": S((4, 5), jnp.float32), "bias": S((5,), jnp.float32)},
    }
    assert flops.kernel_params(tree) == 3 * 24 + 20
    assert flops.kernel_params(tree, exclude=("mlp",)) == 72
    assert [flops.attention_width(m) for m in flops.attention_modules(tree)] == [6]
    assert flops.self_attention_encoder(tree, 7) == 2 * 92 * 7 + 4 * 7 * 7 * 6
    assert base.BaseModel.analytical_flops(None, tree, {}) is None  # the default: no count


def xla_ratio(model: base.BaseModel, batch: dict) -> float:
    params = abstract_params(model, batch)
    return cost.forward_flops_per_example(model, params, batch) / model.analytical_flops(
        params, batch
    )


def test_dense_vit_matches_xla():
    # XLA counts the elementwise ops too, so it sits a little above the matmul count.
    model = vit(hidden_size=256, num_layers=2, num_heads=4, mlp_dim=1024, patch_size=4)
    assert 1.0 <= xla_ratio(model, image_batch(2, 32)) < 1.1  # observed 1.010


def t5_batch(batch: int = 2, inputs: int = 64, targets: int = 32) -> dict:
    tokens = lambda length: S((batch, length), jnp.int32)  # noqa: E731
    return {
        "encoder_input_tokens": tokens(inputs),
        "decoder_input_tokens": tokens(targets),
        "decoder_target_tokens": tokens(targets),
    }


def test_dense_t5_matches_xla():
    config = t5_model.T5Model.default_config()
    config.update(size="tiny", vocab_size=256, d_model=256, d_ff=512, num_heads=4, d_kv=64)
    config.update(num_encoder_layers=2, num_decoder_layers=2)
    assert 1.0 <= xla_ratio(t5_model.T5Model(config, {}), t5_batch()) < 1.1  # observed 1.006


def test_t5_cross_attention_projects_the_memory():
    """Decoder: q / out / MLP on the targets, cross-attention keys / values on the inputs."""
    dims = t5_model.T5Model(t5_model.T5Model.default_config(), {"vocab_size": 9}).dims()
    d, inner, ff = dims.d_model, dims.num_heads * dims.d_kv, dims.d_ff
    got = t5_model.decoder_layer_flops(dims, 3, 10)
    on_targets = 2 * (6 * d * inner + 3 * d * ff) * 3
    assert got == on_targets + 2 * (2 * d * inner) * 10 + 4 * inner * (3 * 3 + 3 * 10)


# A config of every registered model (smoke sizes): each must give a count.
EVERY_MODEL = {
    "vit_classifier": "configs/baselines/vit.py:smoke",
    "transformer_classifier": "configs/parity/transformer.py:smoke",
    "t5": "configs/altup/t5.py:tiny,dense,data=random",  # model_name replaced below
    "t5_altup": "configs/altup/t5.py:tiny,altup,data=random",
    "adatape_vit": "configs/adatape/imagenet.py:smoke",
    "adatape_parity": "configs/adatape/parity.py:smoke",
    "ut_parity": "configs/baselines/parity_ut.py:smoke",
    "uvit": "configs/baselines/uvit.py:smoke",
    "avit": "configs/baselines/avit.py:smoke",
}


def test_every_registered_model_counts():
    assert set(EVERY_MODEL) == set(registry.MODELS.names())
    for name, spec in EVERY_MODEL.items():
        config = load_config(spec)
        if name == "t5":  # no config of its own: the AltUp recipe's dense model
            with config.unlocked():
                config.model_name = "t5"
                del config.model["altup"]
        exp = build_experiment(config)
        count = exp.model.analytical_flops(exp.abstract_state.params, exp.abstract_batch)
        assert count is not None and count > 0, name
