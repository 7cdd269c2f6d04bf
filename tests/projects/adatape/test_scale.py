"""AdaTape at scale: logical names on every parameter, bfloat16 compute with float32
tape reading, rematerialised blocks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from framework.config import loader, registry, schema
from framework.data.pipeline import HostSplit
from framework.models import partitioning as pt
from framework.train import sharding, steps
from projects.adatape import atr
from projects.adatape.settings import AdaTapeSettings
from tests.projects import model_testing as mt
from tests.projects.adatape.test_atr import _mixed_batch

PARITY_CONFIG = "configs/adatape/parity.py:smoke"
IMAGENET_CONFIG = "configs/adatape/imagenet.py:smoke"

# The configs' presets and every tape variant `AdaTapeSettings` offers that adds or
# moves parameters: the learned bank, the symbol bank's positions, the tape GLU, the
# separate tape FFN, blocks before insertion, a class token as ATR's query.
TAPE_VARIANTS = {
    "parity": (PARITY_CONFIG, {}),
    "parity-learn": (
        PARITY_CONFIG,
        {"model.bank_type": "learn", "model.bank_size": 64, "model.tape_insert_layer": 1},
    ),
    "parity-positions-tape_mlp-tape_ffn": (
        PARITY_CONFIG,
        {
            "model.bank_position": "learned",
            "model.bank_init": "lecun_normal",
            "model.tape_mlp_dim": 16,
            "model.separate_tape_ffn": True,
        },
    ),
    "imagenet": (IMAGENET_CONFIG, {}),
    "imagenet-learn-token-tape_mlp-tape_ffn": (
        IMAGENET_CONFIG,
        {
            "model.bank_type": "learn",
            "model.bank_size": 64,
            "model.pooling": "token",
            "model.query_source": "token",
            "model.tape_mlp_dim": 16,
            "model.separate_tape_ffn": True,
        },
    ),
}


def _model_from_config(spec: str, overrides: dict, batch_size: int = 2):
    config = schema.resolve(loader.load_config(spec, **overrides))
    split = HostSplit(batch_size, batch_size)
    data = registry.DATASETS.get(config.dataset_name)(config.dataset, split, config.seed)
    model = registry.MODELS.get(config.model_name)(config.model, data.meta)
    return model, data.example_batch()


@pytest.mark.parametrize("remat", ["none", "block"])
@pytest.mark.parametrize("variant", list(TAPE_VARIANTS))
def test_every_parameter_has_a_mapped_logical_name(variant, remat):
    spec, overrides = TAPE_VARIANTS[variant]
    model, batch = _model_from_config(
        spec, {**overrides, "model.remat": remat, "model.dtype": "bfloat16"}
    )
    boxed = jax.eval_shape(model.init_boxed, jax.random.key(0), batch)
    axes = sharding.logical_axes(boxed)
    assert sharding.unmapped_axes(axes) == []
    # Parameters are float32 whatever the compute dtype.
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(nn.meta.unbox(boxed))}
    assert dtypes == {jnp.dtype(jnp.float32)}
    # The tape-specific parameters carry the names the rules expect.
    assert axes[("encoder", "atr", "norm", "scale")] == (pt.EMBED,)
    if overrides.get("model.bank_type") == "learn":
        assert axes[("tape_bank", "bank")] == (pt.BANK, pt.EMBED)
    else:
        assert axes[("tape_bank", "projection", "kernel")][-1] == pt.EMBED
    if overrides.get("model.tape_mlp_dim"):
        assert axes[("encoder", "tape_mlp", "fc1", "kernel")] == (pt.EMBED, pt.MLP)
        assert axes[("encoder", "tape_mlp", "fc2", "kernel")] == (pt.MLP, pt.EMBED)
    if overrides.get("model.separate_tape_ffn"):
        tape_ffn = [path for path in axes if path[3:] == ("tape_mlp", "fc1", "kernel")]
        assert tape_ffn and all(axes[path] == (pt.EMBED, pt.MLP) for path in tape_ffn)


def test_atr_reads_the_same_from_bfloat16_inputs_as_from_their_float32_values():
    """ATR computes in float32: bfloat16 query and bank give exactly what the same
    values in float32 give (reading order, weights, halting, ponder, lengths)."""
    query, bank = _mixed_batch(np.random.default_rng(3), batch=16)
    query16 = jnp.asarray(query, jnp.bfloat16)
    bank16 = jnp.asarray(bank, jnp.bfloat16)
    settings = AdaTapeSettings(key_dim=8, max_tape_tokens=8, num_candidates=3)
    module = atr.AdaptiveTapeReading(settings=settings)
    width = query.shape[-1]
    variables = {"params": {"norm": {"scale": jnp.ones(width), "bias": jnp.zeros(width)}}}

    def read(q, b):
        return module.apply(variables, q, b, train=False)

    low = read(query16, bank16)
    high = read(query16.astype(jnp.float32), bank16.astype(jnp.float32))
    for field in ("tape", "ponder", "halting", "weights"):
        assert getattr(low, field).dtype == jnp.float32, field
    for field in ("tape", "valid", "length", "ponder", "halting", "indices", "weights", "used"):
        np.testing.assert_array_equal(getattr(low, field), getattr(high, field), err_msg=field)
    assert len(set(np.asarray(low.length).tolist())) > 1


PARITY = dict(hidden_size=32, num_layers=2, num_heads=2, mlp_dim=64)
VIT = dict(variant="nano/4", num_layers=2, bank_patch_size=2, pooling="gap")
TAPE = dict(max_tape_tokens=8, num_candidates=2, halting_threshold=2.0)
# (model, dataset, dataset fields, model fields); ATR's LayerNorm scale is raised at
# init (below) so that the weights are peaky and tape lengths differ across the batch.
BF16_CASES = {
    "parity": (
        "adatape_parity",
        "parity",
        dict(length=16),
        dict(PARITY, **TAPE, query_noise_std=0.5),  # noise: float32 draws in both dtypes
    ),
    "vit": ("adatape_vit", "random_images", dict(image_size=16, num_classes=5), dict(VIT, **TAPE)),
}


def _peaky_params(model, batch):
    """Initial parameters (random head) with ATR's LayerNorm scale tripled: peaky weights,
    so that tape lengths differ across the batch."""
    params = mt.randomize_head(jax.jit(model.init)(jax.random.key(0), batch))
    norm = params["encoder"]["atr"]["norm"]
    params["encoder"]["atr"]["norm"] = {**norm, "scale": 3.0 * norm["scale"]}
    return params


@pytest.mark.parametrize("case", list(BF16_CASES))
def test_bfloat16_reads_the_same_tape_lengths_and_a_close_first_loss(case):
    model_name, dataset_name, data, fields = BF16_CASES[case]
    models = {}
    for dtype in ("float32", "bfloat16"):
        models[dtype], batch = mt.build(
            model_name, dataset_name, batch_size=16, dataset=data, dtype=dtype, **fields
        )
    # The same float32 parameter tree whatever the compute dtype.
    shapes = {d: jax.eval_shape(m.init, jax.random.key(0), batch) for d, m in models.items()}
    assert shapes["float32"] == shapes["bfloat16"]
    params = _peaky_params(models["float32"], batch)
    results = {
        dtype: jax.jit(steps.make_loss_fn(model))(params, batch, jax.random.key(1))
        for dtype, model in models.items()
    }
    (loss32, (_, aux32)), (loss16, (_, aux16)) = results["float32"], results["bfloat16"]
    length32 = np.asarray(aux32["aux_histograms"]["tape_length"])
    length16 = np.asarray(aux16["aux_histograms"]["tape_length"])
    assert len(set(length32.tolist())) > 1  # lengths vary: the comparison means something
    np.testing.assert_array_equal(length16, length32)
    assert loss16.dtype == jnp.float32
    np.testing.assert_allclose(float(loss16), float(loss32), rtol=2e-2)
    ponder16 = np.asarray(aux16["aux_loss"]["ponder"])
    assert ponder16.dtype == np.float32
    np.testing.assert_allclose(ponder16, np.asarray(aux32["aux_loss"]["ponder"]), atol=5e-3)


# Blocks before and after insertion, the tape GLU, a separate tape FFN (the last block),
# dropout everywhere (the recomputed blocks must draw the same masks). AdaTape-ViT runs
# the same encoder, so one model covers both.
REMAT_FIELDS = dict(
    PARITY,
    tape_insert_layer=1,
    separate_tape_ffn=True,
    tape_mlp_dim=8,
    max_tape_tokens=5,
    atr_early_exit=False,  # one branch less to compile
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
    query_noise_std=0.5,
)


def _count_primitives(jaxpr, names: tuple[str, ...]) -> int:
    """Equations whose primitive is one of `names`, nested jaxprs included."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name in names
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            count += _count_primitives(sub, names)
    return count


def test_remat_block_gives_the_loss_and_gradients_of_none():
    results, params = {}, None
    for remat in ("none", "block"):
        model, batch = mt.build(
            "adatape_parity", "parity", dataset=dict(length=16), remat=remat, **REMAT_FIELDS
        )
        if params is None:  # one set of parameters for both
            params = mt.randomize_head(jax.jit(model.init)(jax.random.key(0), batch))
        grad_fn = jax.value_and_grad(steps.make_loss_fn(model), has_aux=True)
        traced = jax.jit(grad_fn).trace(params, batch, jax.random.key(1))
        # Every block is rematerialised under 'block', none under 'none'.
        remats = _count_primitives(traced.jaxpr.jaxpr, ("remat2", "checkpoint", "remat"))
        assert remats == (REMAT_FIELDS["num_layers"] if remat == "block" else 0)
        results[remat] = traced.lower().compile()(params, batch, jax.random.key(1))
    (loss_a, (_, aux_a)), grads_a = results["none"]
    (loss_b, (_, aux_b)), grads_b = results["block"]
    np.testing.assert_allclose(float(loss_b), float(loss_a), rtol=1e-6)
    ponder_a, ponder_b = aux_a["aux_loss"]["ponder"], aux_b["aux_loss"]["ponder"]
    np.testing.assert_allclose(np.asarray(ponder_b), np.asarray(ponder_a), rtol=1e-6)
    assert (
        mt.grad_norm(grads_a, "tape_bank") > 0 and mt.grad_norm(grads_a, "encoder", "tape_mlp") > 0
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6), grads_a, grads_b
    )
