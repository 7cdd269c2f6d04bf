"""Decoding of tiny AltUp variants: cached = uncached = teacher-forced argmax.

AltUp (concat and sum readout) and Recycled-AltUp decode one token at a time with the
cache of their wrapped layers; Sequence-AltUp only without a cache.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.models.t5 import decode_steps, decoding
from projects.altup.model import T5AltUpModel
from tests.framework.models.test_decoding import (
    MAX_LEN,
    REAL,
    assert_follows_teacher_forcing,
    check_greedy,
    decoded,
    encoder_batch,
    init_params,
    jit_teacher_forced,
    tiny_config,
)


def make_model(variant: str, **altup) -> T5AltUpModel:
    config = tiny_config(T5AltUpModel)
    config.altup.variant = variant
    for key, value in altup.items():
        config.altup[key] = value
    return T5AltUpModel(config, {})


@pytest.mark.parametrize(
    "variant, altup",
    [("altup", {"readout": "concat"}), ("altup", {"readout": "sum"}), ("recycled", {})],
    ids=["altup_concat", "altup_sum", "recycled"],
)
def test_cached_greedy_matches_uncached_and_teacher_forcing(variant, altup):
    model = make_model(variant, k=2, **altup)
    params = init_params(model, seed=1)
    inputs = encoder_batch()["encoder_input_tokens"]
    cache = jax.eval_shape(
        lambda: decode_steps.init_cache(
            model.module, params, decode_steps.encode(model.module, params, inputs), MAX_LEN
        )
    )
    # The cache lives in the wrapped d-wide layer of every decoder layer.
    for name in ("layers_0", "layers_1"):
        attention = cache["decoder"][name]["layer"]["self_attention"]
        assert attention["cached_key"].shape == (4, MAX_LEN, 2, 8)
    check_greedy(decoded(model.module, params))


def test_sequence_altup_decodes_without_cache():
    model = make_model("sequence", sequence_stride=2)
    assert not model.module.adapter.supports_decode_cache()
    params = init_params(model, seed=2)
    batch = encoder_batch()
    # decode_batch picks the uncached path by itself; the cached one is refused.
    greedy = decoding.decode_batch(model, params, batch, MAX_LEN)
    with pytest.raises(ValueError, match="no cached one-token step"):
        decoding.decode_batch(model, params, batch, MAX_LEN, use_cache=True)
    argmax, greedy_log_p = jit_teacher_forced(
        model.module, params, batch["encoder_input_tokens"], jnp.asarray(greedy)
    )
    assert_follows_teacher_forcing(greedy, np.asarray(argmax))
    # Uncached beam search (its state, the input buffer, follows the beams).
    beams = decoding.decode_batch(model, params, batch, MAX_LEN, "beam", beam_size=3, alpha=0.0)
    _, beam_log_p = jit_teacher_forced(
        model.module, params, batch["encoder_input_tokens"], jnp.asarray(beams)
    )
    assert np.all(np.asarray(beam_log_p)[REAL] >= np.asarray(greedy_log_p)[REAL] - 1e-5)
    np.testing.assert_array_equal(beams[~REAL], 0)
