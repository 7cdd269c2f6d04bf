"""A-ViT: halting invariants, frozen and masked halted tokens, the losses against NumPy;
the A-ViT and U2T smoke configs train."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.baselines import avit as avit_config
from configs.baselines import u2t as u2t_config
from framework.config import fields, schema
from framework.errors import ConfigError
from framework.models import base, layers, vit
from projects.baselines import avit
from tests.projects import model_testing as mt

DEPTH, WIDTH = 4, 16


def _reference(h: np.ndarray, threshold: float):
    """NumPy A-ViT halting from raw scores h [L, B, T] (last block forced to 1):
    N (1-based halting block), r, rho and the halting mass w [L, B, T]."""
    h = np.asarray(h, np.float64).copy()
    h[-1] = 1.0
    c = np.cumsum(h, axis=0)
    n = np.argmax(c >= threshold, axis=0) + 1  # the first block reaching the threshold
    before = np.where(n > 1, np.take_along_axis(c, np.maximum(n - 2, 0)[None], 0)[0], 0.0)
    r = 1.0 - before
    blocks = np.arange(1, len(h) + 1)[:, None, None]
    w = np.where(blocks < n, h, np.where(blocks == n, r, 0.0))
    return n, r, n + r, w


def _prior_kl(w: np.ndarray, mean: float, std: float) -> np.ndarray:
    """NumPy KL(prior || H) per example, H the token-mean halting mass, clipped."""
    q = w.mean(-1).T  # [B, L]
    q = np.clip(q / q.sum(-1, keepdims=True), 0.01, 0.99)
    p = np.exp(-0.5 * ((np.arange(w.shape[0]) - mean) / std) ** 2)
    p = p / p.sum()
    return (p * (np.log(p) - np.log(q))).sum(-1)


@pytest.fixture(scope="module")
def tokens_run():
    """AdaptiveTokens over 4 real blocks on random tokens, with a gate (gamma 3, beta 1)
    that halts tokens at different blocks; returns (settings, AViTOutput as NumPy, the
    states after each block [L, B, T, D])."""
    settings = avit.AViTSettings(halting_gamma=3.0, halting_beta=1.0)
    module = avit.AdaptiveTokens(
        blocks=tuple(layers.EncoderBlock(num_heads=2, mlp_dim=32) for _ in range(DEPTH)),
        settings=settings,
    )
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 9, WIDTH)), jnp.float32)

    @jax.jit
    def run():
        variables = module.init(jax.random.key(0), x, train=False)
        return module.apply(variables, x, train=False, mutable=["intermediates"])

    out, state = run()
    states = np.stack(state["intermediates"]["states"])
    return settings, jax.tree.map(np.asarray, out), states


def test_cumulative_halting_is_monotone_and_every_token_halts(tokens_run):
    settings, out, _ = tokens_run
    c = out.cumulative
    assert np.all(np.diff(c, axis=0) >= 0)
    assert np.all(c[-1] >= settings.threshold)
    assert np.all(out.halting[-1] == 1.0)
    # Running before block l is "not yet reached the threshold"; block 1 runs everything.
    assert out.running[0].all()
    np.testing.assert_array_equal(out.running[1:], c[:-1] < settings.threshold)
    n = out.updates
    assert n.min() >= 1 and n.max() <= DEPTH and len(np.unique(n)) >= 3
    np.testing.assert_array_equal(out.running.sum(0), n)


def test_halting_matches_numpy_reference(tokens_run):
    settings, out, states = tokens_run
    n, r, rho, w = _reference(out.halting, settings.threshold)
    np.testing.assert_array_equal(out.updates, n)
    np.testing.assert_allclose(out.remainder, r, atol=1e-6)
    np.testing.assert_allclose(out.ponder, rho, atol=1e-6)
    np.testing.assert_allclose(out.weights, w, atol=1e-6)
    np.testing.assert_allclose(out.weights.sum(0), 1.0, atol=1e-6)
    # The mean-field output: the halting-weighted sum of each token's states.
    np.testing.assert_allclose(out.output, (w[..., None] * states).sum(0), atol=1e-5)


def test_halted_token_state_is_frozen(tokens_run):
    _, out, states = tokens_run
    n = out.updates.astype(int)
    halted_early = np.argwhere(n < DEPTH)
    assert len(halted_early) > 0
    for b, k in halted_early:
        at_halt = states[n[b, k] - 1, b, k]
        for later in states[n[b, k] :, b, k]:
            np.testing.assert_array_equal(later, at_halt)
    # ... while every token that still runs changes.
    for layer in range(1, DEPTH):
        moving = out.running[layer]
        assert np.all(np.any(states[layer] != states[layer - 1], -1)[moving])


class _Step(nn.Module):
    @nn.compact
    def __call__(self, x, running):
        block = layers.EncoderBlock(num_heads=2, mlp_dim=32)
        return avit.masked_block_update(block, x, running, train=False)


def test_halted_tokens_are_masked_from_attention():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 7, WIDTH)), jnp.float32)
    running = jnp.asarray(rng.random((3, 7)) < 0.5).at[:, 0].set(True)
    assert not running.all()
    step = _Step()
    variables = step.init(jax.random.key(0), x, running)
    apply = jax.jit(step.apply)
    y = apply(variables, x, running)
    # Halted tokens keep their state.
    np.testing.assert_array_equal(np.asarray(y)[~running], np.asarray(x)[~running])
    # Perturbing halted tokens leaves every running token unchanged ...
    noise = jnp.asarray(10 * rng.normal(size=x.shape), jnp.float32)
    y_halted = apply(variables, jnp.where(running[..., None], x, x + noise), running)
    live = np.asarray(running)
    np.testing.assert_allclose(np.asarray(y_halted)[live], np.asarray(y)[live], atol=1e-6)
    # ... while perturbing one running token changes the others (attention is on).
    y_running = apply(variables, x.at[:, 0].add(noise[:, 0]), running)
    other = live.copy()
    other[:, 0] = False
    assert np.all(np.abs(np.asarray(y_running - y)).max(-1)[other] > 1e-4)


def test_model_losses_and_metrics_match_numpy():
    """The whole model, its sown halting scores, and its auxiliary losses and metrics."""
    mean, std = 1.0, 0.8
    model, batch = mt.build(
        "avit",
        "random_images",
        dataset=dict(image_size=8, num_classes=3),
        hidden_size=WIDTH,
        num_layers=DEPTH,
        num_heads=2,
        mlp_dim=32,
        halting_gamma=5.0,
        halting_beta=1.0,
        prior_mean=mean,
        prior_std=std,
    )

    @jax.jit
    def run():
        params = model.init(jax.random.key(0), batch)
        return model.module.apply(
            {"params": params},
            batch["inputs"],
            train=False,
            mutable=[*base.AUX_COLLECTIONS, "intermediates"],
        )

    logits, state = run()
    assert logits.shape == (4, 3)
    h = np.stack(state["intermediates"]["encoder"]["act"]["halting"])
    assert h.shape == (DEPTH, 4, 5)  # 2x2 patches and the class token
    settings = fields.build(avit.AViTSettings, model.config)
    n, _, rho, w = _reference(h, settings.threshold)
    assert len(np.unique(n)) >= 2
    aux = base.collect_aux(state)
    np.testing.assert_allclose(aux["aux_loss"]["ponder"], 5e-4 * rho.mean(-1), rtol=1e-5)
    kl = _prior_kl(w, mean, std)
    np.testing.assert_allclose(aux["aux_metrics"]["avit_prior_kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(aux["aux_loss"]["distr_prior"], 1e-3 * kl, rtol=1e-5)
    np.testing.assert_allclose(aux["aux_metrics"]["ponder_cost"], rho.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(aux["aux_histograms"]["avit_depth"], n.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(
        aux["aux_metrics"]["avit_token_fraction"], n.mean(-1) / DEPTH, rtol=1e-6
    )


def test_prior_kl_against_numpy_unclipped_and_clipped():
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(5), size=(2, 6)).transpose(2, 0, 1)  # [L, B, T], sums to 1
    w[:, 1] = 0.0
    w[-1, 1] = 1.0  # the second example: every token runs to the last block (clipped)
    prior = avit.gaussian_prior(5, 3.0, 1.0)
    got = avit.distribution_prior_kl(jnp.asarray(w, jnp.float32), prior)
    np.testing.assert_allclose(np.asarray(got), _prior_kl(w, 3.0, 1.0), rtol=1e-5)
    # The prior is a normalised Gaussian over the block indices, finite far in its tail.
    np.testing.assert_allclose(prior.sum(), 1.0)
    assert prior.argmax() == 3
    assert np.all(np.isfinite(avit.gaussian_prior(24, 16.0, 1.0)))
    tail = np.asarray(
        avit.distribution_prior_kl(jnp.full((24, 1, 3), 1 / 24), avit.gaussian_prior(24, 16.0, 1.0))
    )
    assert np.all(np.isfinite(tail))


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("halting_gamma", 0.0, "model.halting_gamma must be positive, got 0.0"),
        ("act_epsilon", 1.0, r"model.act_epsilon must lie in \(0, 1\), got 1.0"),
        ("ponder_weight", -1.0, "model.ponder_weight must be >= 0, got -1.0"),
        ("distr_prior_weight", -1.0, "model.distr_prior_weight must be >= 0"),
        ("prior_std", 0.0, "model.prior_std must be positive, got 0.0"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_key(field, value, message):
    with pytest.raises(ConfigError, match=message):
        avit.AViTSettings(**{field: value})


def test_settings_defaults_prior_mean_and_declaration():
    assert avit.AViTSettings().threshold == 0.99
    assert avit.AViTSettings().resolved(12).prior_mean == 8.0  # the release's target_depth
    assert avit.AViTSettings().resolved(4).prior_mean == 3.0
    assert avit.AViTSettings(prior_mean=2.5).resolved(4).prior_mean == 2.5
    with pytest.raises(ConfigError, match=r"model.prior_mean must lie in \[0, 3\]"):
        avit.AViTSettings(prior_mean=4.0).resolved(4)
    defaults = {f.name: f.default for f in dataclasses.fields(avit.AViTSettings)}
    config = avit.AViT.default_config()
    assert {name: config[name] for name in defaults} == defaults
    assert config.get_type("prior_mean") is float
    assert fields.build(avit.AViTSettings, config) == avit.AViTSettings()
    with pytest.raises(ConfigError, match="model.prior_mean must lie in"):
        mt.build("avit", "random_images", dataset=dict(image_size=8), prior_mean=5.0)


@pytest.mark.parametrize(
    "arg,beta,depth",
    [("Ti/16", 30.0, 12), ("S/16", 75.0, 12), ("smoke", 5.0, 4)],
)
def test_avit_configs_resolve(arg, beta, depth):
    """The released sizes on generated data (`data=random`: the full model and recipe)."""
    if arg != "smoke":
        arg += ",data=random"
    c = schema.resolve(avit_config.get_config(arg))
    assert c.model_name == "avit" and c.model.halting_beta == beta
    settings = fields.build(avit.AViTSettings, c.model)
    assert vit.resolve_size(c.model).num_layers == depth
    assert settings.resolved(depth).prior_mean == (8.0 if depth == 12 else 3.0)
    assert (settings.halting_gamma, settings.ponder_weight, settings.distr_prior_weight) == (
        10.0, 5e-4, 1e-3,
    )  # fmt: skip
    if depth == 12:
        assert (c.dataset.image_size, c.batch_size) == (224, 4096)
        assert c.model.variant == arg.split(",")[0]


def test_u2t_config_is_uvit_with_per_token_halting():
    c = schema.resolve(u2t_config.get_config("S/16,data=random"))
    assert (c.model_name, c.model.halting, c.model.variant, c.model.max_steps) == (
        "uvit", "token", "S/16", 12,
    )  # fmt: skip
    assert schema.resolve(u2t_config.get_config("smoke")).model.halting == "token"
    known = "known: variant=S/16\\|smoke, runlocal, data=random"
    with pytest.raises(ValueError, match=f"unknown config arg 'B/16'; {known}"):
        u2t_config.get_config("B/16")
