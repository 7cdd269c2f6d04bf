"""AdaTape's analytical FLOPs: a hand count, tape options that move work around, and
XLA's count of a compiled AdaTape-ViT."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from projects.adatape.parity_model import AdaTapeParity
from projects.adatape.vit_model import AdaTapeViT
from tests.framework.models.test_flops import abstract_params, image_batch, xla_ratio

S = jax.ShapeDtypeStruct


def parity(**fields) -> tuple[AdaTapeParity, dict]:
    config = AdaTapeParity.default_config()
    config.update(hidden_size=8, num_layers=1, num_heads=2, mlp_dim=16)
    config.update(max_tape_tokens=3, num_candidates=2, **fields)
    batch = {"inputs": S((2, 4, 2), jnp.float32), "label": S((2,), jnp.int32)}
    return AdaTapeParity(config, {"num_classes": 2}), batch


def test_parity_by_hand():
    model, batch = parity()
    embed = 2 * (4 * 2 * 8) * 1  # the flattened 4 x 2 sequence projected to one token = 128
    bank = 2 * (2 * 8) * 4  # each of the 4 positions' symbols projected = 128
    # 3 reads; key_dim 8 / 2 heads = 4: scores 4 entries x 4, sum of 2 candidates x 8.
    atr = 3 * (2 * 4 * 4 + 2 * 2 * 8)  # = 192
    # one block on [input token ; 3 tape slots] = 4 tokens: q, k, v, out, fc1, fc2.
    block = 2 * (4 * 8 * 8 + 2 * 8 * 16) * 4 + 4 * 4 * 4 * 8  # = 4096 + 512
    head = 2 * 8 * 2  # = 32
    assert embed + bank + atr + block + head == 5088
    assert model.analytical_flops(abstract_params(model, batch), batch) == 5088


def test_learned_bank_is_scored_not_computed():
    model, batch = parity(bank_type="learn", bank_size=50)
    # No bank projection (-128); the reads score 50 entries instead of 4.
    expected = 5088 - 128 + 3 * 2 * (50 - 4) * 4
    assert model.analytical_flops(abstract_params(model, batch), batch) == expected


def vit(**fields) -> AdaTapeViT:
    config = AdaTapeViT.default_config()
    config.update(hidden_size=256, num_layers=2, num_heads=4, mlp_dim=1024, patch_size=4)
    config.update(fields)
    return AdaTapeViT(config, {"num_classes": 10})


def test_vit_tape_options():
    batch = image_batch(2, 16)
    base = vit()
    params = abstract_params(base, batch)
    count = base.analytical_flops(params, batch)
    # A separate tape FFN runs kernels of the same shapes on the same positions.
    separate = vit(separate_tape_ffn=True)
    assert separate.analytical_flops(abstract_params(separate, batch), batch) == count
    # The tape GLU (256 -> 2 x 32 -> 256) on the 10 tape slots.
    glu = vit(tape_mlp_dim=32)
    glu_count = 2 * (256 * 64 + 32 * 256) * 10
    assert glu.analytical_flops(abstract_params(glu, batch), batch) == count + glu_count


def test_vit_matches_xla():
    assert 1.0 <= xla_ratio(vit(), image_batch(2, 32)) < 1.1  # observed 1.01
