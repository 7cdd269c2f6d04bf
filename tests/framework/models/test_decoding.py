"""Decoding of a tiny T5: cached = uncached = teacher-forced argmax, beam search, EOS, padding.

Parameters are random, so the decoded tokens are arbitrary but deterministic; every
check compares decoding with the model's own teacher-forced pass on the decoded tokens.
Each model's decoders run in one compiled program (`run_decoders`): compiling costs
about a second per program on CPU, running it nothing.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.models.t5 import beam_search, decode_steps, decoding
from framework.models.t5 import model as t5_model

VOCAB, D, FF, HEADS, KV, N_ENC, N_DEC = 40, 16, 32, 2, 8, 1, 2
MAX_LEN = 6
EOS = decode_steps.EOS_ID


def tiny_config(model_class: type[t5_model.T5Model] = t5_model.T5Model):
    config = model_class.default_config()
    config.size = "tiny"
    config.vocab_size = VOCAB
    config.d_model, config.d_ff, config.num_heads, config.d_kv = D, FF, HEADS, KV
    config.num_encoder_layers, config.num_decoder_layers = N_ENC, N_DEC
    return config


def encoder_batch() -> dict[str, jax.Array]:
    """Rows: real, real with trailing padding, real tokens but mask 0, all padding."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, VOCAB, (4, 7))
    tokens[1, 4:] = 0
    tokens[3] = 0
    return {
        "encoder_input_tokens": jnp.asarray(tokens, jnp.int32),
        "mask": jnp.asarray([1, 1, 0, 0], jnp.float32),
    }


REAL = np.array([True, True, False, False])  # rows of encoder_batch() that decode


def init_params(model: t5_model.T5Model, seed: int = 0):
    """Random parameters of the model's shapes (no compiled init: it costs seconds).

    Matrices ~ N(0, 1 / fan_in), vectors (norm scales, AltUp's g) ~ 1 + N(0, 0.01).
    """
    batch = dict(encoder_batch())
    batch["decoder_input_tokens"] = batch["decoder_target_tokens"] = jnp.ones((4, 3), jnp.int32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), batch)
    rng = np.random.default_rng(seed)

    def draw(leaf):
        if len(leaf.shape) == 1:
            return jnp.asarray(1.0 + 0.1 * rng.normal(size=leaf.shape), leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)

    return jax.tree.map(draw, shapes)


def teacher_forced(module, params, encoder_input_tokens, tokens):
    """(argmax [B, L], log p up to the first EOS [B]) of `T5Module.__call__` on `tokens`.

    Decoder inputs are [0] + tokens shifted right; the targets only mark every position
    attendable (decoding attends to every earlier position whatever its token).
    """
    inputs = jnp.concatenate([jnp.zeros_like(tokens[:, :1]), tokens[:, :-1]], axis=1)
    logits = module.apply(
        {"params": params}, encoder_input_tokens, inputs, jnp.ones_like(tokens), train=False
    )
    log_p = jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[..., None], axis=-1)[..., 0]
    eos_before = jnp.cumsum(tokens == EOS, axis=1) - (tokens == EOS)
    return jnp.argmax(logits, -1), jnp.sum(jnp.where(eos_before == 0, log_p, 0.0), axis=1)


jit_teacher_forced = jax.jit(teacher_forced, static_argnums=0)


@functools.partial(jax.jit, static_argnames=("module", "use_cache", "beams"))
def run_decoders(
    module, params, alpha: float = 0.0, use_cache: tuple[bool, ...] = (True, False), beams=False
) -> dict[str, jax.Array]:
    """Greedy tokens for each of `use_cache`, the teacher-forced pass on them and beams.

    beams: beam search of size 1 (alpha=0) and 3 (`alpha`) with their scores and their
    log-probabilities by the teacher-forced pass.
    """
    batch = encoder_batch()
    tokens, mask = batch["encoder_input_tokens"], batch["mask"]
    out = {}
    for cached in use_cache:
        out[f"greedy_{'cached' if cached else 'uncached'}"] = decoding.greedy_decode(
            module, params, tokens, max_length=MAX_LEN, use_cache=cached, mask=mask
        )
    out["greedy"] = out[f"greedy_{'cached' if use_cache[0] else 'uncached'}"]
    out["teacher_forced"], out["greedy_log_p"] = teacher_forced(
        module, params, tokens, out["greedy"]
    )
    if beams:
        for size, beam_alpha in ((1, 0.0), (3, alpha)):
            out[f"beam{size}"], out[f"beam{size}_score"] = beam_search.beam_search(
                module,
                params,
                tokens,
                max_length=MAX_LEN,
                beam_size=size,
                alpha=beam_alpha,
                mask=mask,
            )
        _, out["beam3_log_p"] = teacher_forced(module, params, tokens, out["beam3"])
    return out


def decoded(module, params, **kwargs) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(value) for name, value in run_decoders(module, params, **kwargs).items()
    }


def assert_follows_teacher_forcing(tokens: np.ndarray, argmax: np.ndarray) -> None:
    """Real rows: the teacher-forced argmax up to the first EOS, padding after; others 0."""
    for row in range(tokens.shape[0]):
        if not REAL[row]:
            np.testing.assert_array_equal(tokens[row], 0)
            continue
        eos = np.flatnonzero(tokens[row] == EOS)
        end = eos[0] + 1 if eos.size else tokens.shape[1]
        np.testing.assert_array_equal(tokens[row, :end], argmax[row, :end])
        np.testing.assert_array_equal(tokens[row, end:], 0)


def check_greedy(out: dict[str, np.ndarray]) -> None:
    """Every greedy decoding of `out` equal, and equal to the teacher-forced argmax."""
    for name, tokens in out.items():
        if name.startswith("greedy_") and name != "greedy_log_p":
            np.testing.assert_array_equal(tokens, out["greedy"], err_msg=name)
    assert_follows_teacher_forcing(out["greedy"], out["teacher_forced"])
    assert np.any(out["greedy"][REAL] != 0)


def lengths(tokens: np.ndarray) -> np.ndarray:
    """Decoded length of each row: up to and including the first EOS, else all of it."""
    is_eos = tokens == EOS
    return np.where(is_eos.any(1), is_eos.argmax(1) + 1, tokens.shape[1])


def eos_biased(params, greedy_tokens: np.ndarray):
    """Params whose EOS logit is 1.05x that of the token row 0 emits at position 2.

    Wherever that token had a positive winning logit, EOS now wins: a deterministic way
    to make some rows end before max_length.
    """
    params = flax.core.unfreeze(jax.tree.map(np.array, params))
    kernel = params["decoder"]["logits_dense"]["kernel"]
    kernel[:, EOS] = 1.05 * kernel[:, greedy_tokens[0, 2]]
    return jax.tree.map(jnp.asarray, params)


@pytest.fixture(scope="module")
def dense():
    model = t5_model.T5Model(tiny_config(), {})
    params = init_params(model)
    return model, params, decoded(model.module, params, alpha=0.0, beams=True)


def test_greedy_cached_uncached_and_teacher_forcing_agree(dense):
    check_greedy(dense[2])


def test_beam_size_one_is_greedy(dense):
    out = dense[2]
    np.testing.assert_array_equal(out["beam1"], out["greedy"])
    np.testing.assert_allclose(out["beam1_score"], out["greedy_log_p"] * REAL, rtol=1e-5)


def test_beam_search_beats_greedy_log_prob(dense):
    out = dense[2]
    beam_log_p, greedy_log_p = out["beam3_log_p"][REAL], out["greedy_log_p"][REAL]
    assert np.all(beam_log_p >= greedy_log_p - 1e-5), (beam_log_p, greedy_log_p)
    # alpha=0: the beam's score is its teacher-forced log-probability.
    np.testing.assert_allclose(out["beam3_score"][REAL], beam_log_p, rtol=1e-5)
    np.testing.assert_array_equal(out["beam3"][~REAL], 0)
    np.testing.assert_array_equal(out["beam3_score"][~REAL], 0.0)


def test_length_penalty_divides_log_prob(dense):
    model, params, _ = dense
    out = decoded(model.module, params, alpha=0.6, beams=True)  # the same program
    penalty = ((5.0 + lengths(out["beam3"])) / 6.0) ** 0.6
    expected = out["beam3_log_p"] / penalty
    np.testing.assert_allclose(out["beam3_score"][REAL], expected[REAL], rtol=1e-5)


def test_eos_ends_rows_with_padding(dense):
    model, params, out = dense
    out = decoded(model.module, eos_biased(params, out["greedy"]), alpha=0.0, beams=True)
    check_greedy(out)
    first_eos = [np.flatnonzero(row == EOS) for row in out["greedy"][REAL]]
    assert any(eos.size and eos[0] < MAX_LEN - 1 for eos in first_eos), out["greedy"]
    for name in ("beam1", "beam3"):
        for row in out[name]:
            eos = np.flatnonzero(row == EOS)
            if eos.size:
                np.testing.assert_array_equal(row[eos[0] + 1 :], 0)
        np.testing.assert_array_equal(out[name][~REAL], 0)
