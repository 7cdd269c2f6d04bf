"""Autoregressive decoding of T5-style models for evaluation: greedy, or beam search.

The decoder starts from token 0 (T5's start token, which is also padding), emits one
token per position up to `max_length` and stops per example at EOS (1); positions after
EOS hold padding (0). Nothing stops the model from emitting 0 itself (as in T5X).
Rows whose encoder input is all padding, or whose `mask` is 0 (padded batch rows),
decode to all zeros. The steps, cached or not, are `decode_steps`; beam search is
`beam_search`; the encoder runs once per call in both.

`decode_batch` is the entry point for evaluation: a model object of
`framework.models.base` (e.g. `t5` / `t5_altup`), its parameters and a batch; it picks
the cache from the model's stack adapter (`supports_decode_cache`) unless told.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from framework.models.t5.beam_search import DEFAULT_ALPHA, jit_beam_search
from framework.models.t5.decode_steps import (
    EOS_ID,
    PAD_ID,
    START_ID,
    encode,
    make_stepper,
    real_rows,
)

Array = jax.Array

METHODS = ("greedy", "beam")


def greedy_decode(
    module: nn.Module,
    params: Any,
    encoder_input_tokens: Array,
    *,
    max_length: int,
    use_cache: bool = True,
    mask: Array | None = None,
    eos_id: int = EOS_ID,
) -> Array:
    """Greedy (argmax) decoding: int32 tokens [B, max_length].

    Stops early once every row has emitted EOS (a `lax.while_loop`). Jit it with
    `module`, `max_length`, `use_cache` and `eos_id` static (see `decode_batch`).
    """
    batch = encoder_input_tokens.shape[0]
    stepper = make_stepper(
        module, params, encode(module, params, encoder_input_tokens), max_length, use_cache
    )

    def cond(carry) -> Array:
        position, _, _, done, _ = carry
        return (position < max_length) & ~jnp.all(done)

    def body(carry):
        position, state, out, done, token = carry
        logits, state = stepper.step(state, token, position)
        token = jnp.where(done, PAD_ID, jnp.argmax(logits, axis=-1).astype(jnp.int32))
        out = out.at[:, position].set(token)
        return position + 1, state, out, done | (token == eos_id), token

    out = jnp.zeros((batch, max_length), jnp.int32)
    done = ~real_rows(encoder_input_tokens, mask)
    start = jnp.full((batch,), START_ID, jnp.int32)
    carry = (jnp.asarray(0, jnp.int32), stepper.init(), out, done, start)
    return jax.lax.while_loop(cond, body, carry)[2]


jit_greedy_decode = jax.jit(
    greedy_decode, static_argnames=("module", "max_length", "use_cache", "eos_id")
)


def decode_batch(
    model: Any,
    params: Any,
    batch: Mapping[str, Any],
    max_length: int,
    method: str = "greedy",
    beam_size: int = 4,
    alpha: float = DEFAULT_ALPHA,
    use_cache: bool | None = None,
    eos_id: int = EOS_ID,
) -> np.ndarray:
    """Decoded tokens [B, max_length] (NumPy) of a batch for evaluation.

    `model` is a `framework.models.base` model whose `module` is a T5Module (e.g. the
    `t5` / `t5_altup` model classes); `batch` has `encoder_input_tokens` [B, Li] and
    optionally `mask` [B] (0 = padded row -> all zeros). `use_cache=None` caches
    unless the model's stack adapter cannot (Sequence-AltUp). `eos_id=-1` never stops
    (benchmarks: every decode emits `max_length` tokens). Compiled once per model
    module, `max_length` and setting.
    """
    module = model.module
    if use_cache is None:
        adapter = getattr(module, "adapter", None)
        use_cache = adapter is None or adapter.supports_decode_cache()
    tokens = jnp.asarray(batch["encoder_input_tokens"], jnp.int32)
    mask = batch.get("mask")
    mask = None if mask is None else jnp.asarray(mask)
    if method == "greedy":
        out = jit_greedy_decode(
            module,
            params,
            tokens,
            max_length=max_length,
            use_cache=use_cache,
            mask=mask,
            eos_id=eos_id,
        )
    elif method == "beam":
        out, _ = jit_beam_search(
            module,
            params,
            tokens,
            max_length=max_length,
            beam_size=beam_size,
            alpha=jnp.float32(alpha),
            use_cache=use_cache,
            mask=mask,
            eos_id=eos_id,
        )
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not out.is_fully_addressable:  # rows on other processes' devices
        out = multihost_utils.process_allgather(out, tiled=True)
    return np.asarray(out)
