"""The baselines' analytical FLOPs by construction: a Universal Transformer's shared
block applied D times costs D distinct blocks (plus its halting unit); A-ViT's halting
removes no computation."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from framework.models.transformer import TransformerClassifier
from framework.models.vit import ViTClassifier
from projects.baselines.avit import AViT
from projects.baselines.models import UTParity, UViT
from tests.framework.models.test_flops import S, abstract_params, image_batch

WIDTHS = dict(hidden_size=16, num_heads=2, mlp_dim=32)


def count(model_class, batch, num_classes: int = 10, **fields) -> float:
    config = model_class.default_config()
    config.update(fields)
    model = model_class(config, {"num_classes": num_classes})
    return model.analytical_flops(abstract_params(model, batch), batch)


@pytest.mark.parametrize("halting", ["example", "token"])
def test_uvit_is_a_vit_of_its_steps(halting):
    batch = image_batch(2, 8)  # 4 patches of 4x4 and a class token: 5 tokens
    vit = count(ViTClassifier, batch, patch_size=4, num_layers=3, **WIDTHS)
    uvit = count(UViT, batch, patch_size=4, max_steps=3, halting=halting, **WIDTHS)
    positions = 5 if halting == "token" else 1  # the halting unit: one dot product each
    assert uvit == vit + 3 * 2 * 16 * positions


def test_avit_counts_every_token_of_every_block():
    batch = image_batch(2, 8)
    vit = count(ViTClassifier, batch, patch_size=4, num_layers=3, **WIDTHS)
    assert count(AViT, batch, patch_size=4, num_layers=3, **WIDTHS) == vit


def test_ut_parity_is_a_transformer_of_its_steps():
    batch = {"inputs": S((2, 6, 3), jnp.float32), "label": S((2,), jnp.int32)}
    plain = count(TransformerClassifier, batch, num_classes=2, num_layers=4, **WIDTHS)
    ut = count(UTParity, batch, num_classes=2, max_steps=4, **WIDTHS)
    assert ut == plain + 4 * 2 * 16
