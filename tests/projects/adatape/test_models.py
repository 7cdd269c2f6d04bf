"""AdaTape models: tape masking, both bank types, tape FFN, gradients, auxiliaries."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.models import layers
from projects.adatape import tape_bank, tape_layers
from tests.projects import model_testing as mt


@pytest.mark.parametrize("separate_tape_ffn", [False, True], ids=["joint_ffn", "tape_ffn"])
def test_unread_tape_slots_change_nothing(separate_tape_ffn):
    rng = np.random.default_rng(0)
    batch, tokens, tape, width = 3, 5, 4, 16
    x = rng.normal(size=(batch, tokens + tape, width)).astype(np.float32)
    lengths = np.array([1, 4, 2])
    valid = np.concatenate(
        [np.ones((batch, tokens), bool), np.arange(tape)[None] < lengths[:, None]], axis=1
    )
    blocks = tape_layers.TapeBlocks(
        num_layers=2, num_heads=2, mlp_dim=32, num_tape=tape, separate_tape_ffn=separate_tape_ffn
    )
    variables = blocks.init(jax.random.key(0), x, valid, train=False)
    garbage = np.where(valid[..., None], x, 100.0 * rng.normal(size=x.shape)).astype(np.float32)

    def run(inputs):
        out = blocks.apply(variables, jnp.asarray(inputs), jnp.asarray(valid), train=False)
        return np.asarray(out), np.asarray(layers.pool(out, "gap", jnp.asarray(valid)))

    out_a, pooled_a = run(x)
    out_b, pooled_b = run(garbage)
    np.testing.assert_allclose(out_a[valid], out_b[valid], atol=1e-5)
    np.testing.assert_allclose(pooled_a, pooled_b, atol=1e-5)
    # Sanity: valid tape slots do matter.
    changed = x.copy()
    changed[0, tokens] += rng.normal(size=width).astype(np.float32)
    assert not np.allclose(run(changed)[1][0], pooled_a[0], atol=1e-4)


def test_separate_tape_ffn_only_moves_tape_tokens():
    """Changing the tape MLP's weights changes tape tokens' outputs, not the others'
    in the same block (attention is joint, the feed-forward is not)."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 6, 16)), jnp.float32)
    valid = jnp.ones((2, 6), bool)
    block = tape_layers.SeparateTapeFFNBlock(num_heads=2, mlp_dim=32, num_tape=2)
    params = block.init(jax.random.key(0), x, valid, train=False)["params"]
    moved = jax.tree.map(lambda p: p + 0.5, params["tape_mlp"])
    out_a = block.apply({"params": params}, x, valid, train=False)
    out_b = block.apply({"params": {**params, "tape_mlp": moved}}, x, valid, train=False)
    np.testing.assert_allclose(out_a[:, :4], out_b[:, :4], atol=1e-6)
    assert np.abs(np.asarray(out_a[:, 4:] - out_b[:, 4:])).max() > 1e-2


PARITY = dict(hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64)
PARITY_DATA = dict(length=16)
VIT = dict(variant="nano/4", num_layers=2, max_tape_tokens=4, num_candidates=2)
IMAGES = dict(image_size=16, num_classes=5)


@pytest.mark.parametrize(
    "model_name,dataset_name,data,model,query_path,random_head",
    [
        (
            "adatape_parity",
            "parity",
            PARITY_DATA,
            dict(
                PARITY,
                bank_type="input",
                bank_position="learned",
                separate_tape_ffn=True,
                tape_mlp_dim=16,
                max_tape_tokens=5,
            ),
            ("input_projection",),
            True,
        ),
        (
            "adatape_parity",
            "parity",
            PARITY_DATA,
            dict(PARITY, bank_type="learn", bank_size=64, tape_insert_layer=1, max_tape_tokens=5),
            ("input_projection",),
            False,
        ),
        (
            "adatape_vit",
            "random_images",
            IMAGES,
            dict(
                VIT,
                bank_type="input",
                bank_patch_size=2,
                separate_tape_ffn=True,
                tape_mlp_dim=16,
                pooling="gap",
            ),
            ("stem", "patch_embedding"),
            True,
        ),
        (
            "adatape_vit",
            "random_images",
            IMAGES,
            dict(VIT, bank_type="learn", bank_size=4000, query_source="token", pooling="token"),
            ("stem", "patch_embedding"),
            True,
        ),
    ],
    ids=["parity-input-tape_ffn", "parity-learn-zero_head", "vit-input-tape_ffn", "vit-learn"],
)
def test_model_forward_backward(model_name, dataset_name, data, model, query_path, random_head):
    m, batch = mt.build(model_name, dataset_name, dataset=data, **model)
    params, loss, grads, aux = mt.init_and_grads(m, batch, random_head=random_head)
    assert np.isfinite(float(loss)) and mt.all_finite(grads)
    # Gradients reach the bank, the query path and ATR's shared LayerNorm; with the
    # zero-initialised head only the ponder loss trains, and it reaches them too.
    assert mt.grad_norm(grads, "tape_bank") > 0
    assert mt.grad_norm(grads, *query_path) > 0
    assert mt.grad_norm(grads, "encoder", "atr", "norm") > 0
    if not random_head:
        assert mt.grad_norm(grads, "encoder", "tape_blocks") == 0
    if model.get("separate_tape_ffn"):
        last = f"block_{m.config.num_layers - 1}"
        assert mt.grad_norm(grads, "encoder", "tape_blocks", last, "tape_mlp") > 0
    if model.get("tape_mlp_dim"):
        assert mt.grad_norm(grads, "encoder", "tape_mlp") > 0
    if model["bank_type"] == "learn":
        bank = np.asarray(params["tape_bank"]["bank"])
        assert bank.shape == (model["bank_size"], m.config.hidden_size or 32)
        assert np.abs(bank).max() <= 2 * 0.02 + 1e-6  # truncated normal, std 0.02
        assert 0.012 < bank.std() < 0.02
    # Auxiliaries: the ponder loss is ponder_weight * R; tape lengths lie in [2, T].
    ponder_loss = np.asarray(aux["aux_loss"]["ponder"])
    ponder_cost = np.asarray(aux["aux_metrics"]["ponder_cost"])
    np.testing.assert_allclose(ponder_loss, 0.01 * ponder_cost, rtol=1e-6)
    assert np.all(ponder_cost > 0)
    length = np.asarray(aux["aux_histograms"]["tape_length"])
    assert length.shape == (4,)
    assert np.all((length >= 2) & (length <= model["max_tape_tokens"]))


def test_vit_classifier_builds_and_trains():
    m, batch = mt.build("vit_classifier", "random_images", dataset=IMAGES, pooling="gap")
    params, loss, grads, aux = mt.init_and_grads(m, batch, random_head=False)
    assert np.all(np.asarray(params["classifier"]["head"]["kernel"]) == 0)
    assert np.isfinite(float(loss)) and mt.grad_norm(grads, "classifier") > 0
    assert not aux["aux_loss"]


def test_zero_init_symbol_bank_ties_every_entry_at_init():
    """bank_init=zeros: every entry is the bias, so ATR reads positions in order."""
    values = np.random.default_rng(0).integers(0, 3, (2, 9))
    symbols = jnp.asarray(np.eye(3, dtype=np.float32)[values])
    for init, tied in (("zeros", True), ("lecun_normal", False)):
        bank = tape_bank.SymbolTapeBank(8, "none", init)
        params = bank.init(jax.random.key(0), symbols)
        out = np.asarray(bank.apply(params, symbols))
        assert (np.ptp(out, axis=(0, 1)).max() == 0.0) == tied
