"""One-token decoder steps of T5-style models, cached or not (the decode loops' state).

A model here is a `T5Module`-like flax module with `encode(tokens, train=False)`,
`decode(encoded, decoder_inputs, decoder_targets, train=False)` and, for the cached
path, `decode_step(encoded, token [B, 1], decode_length=L)` (see `framework.models.t5`).
The decoder starts from token 0 (T5's start token, which is also padding) and stops per
example at EOS (1). Rows whose encoder input is all padding, or whose `mask` is 0
(padded batch rows), are not decoded (`real_rows`).

Two ways to run a step, both under `jax.jit` with static shapes:
- cached (`use_cache=True`): one token per step through `decode_step`, with the
  self-attention keys/values of every decoder layer and the projected encoder memory
  in flax's `cache` collection (`init_cache`).
- uncached (`use_cache=False`): every step reruns `decode` on the whole [B, max_length]
  buffer of decoder inputs (the causal mask hides positions not yet decoded) and
  reads the logits of the current position. This works for any stack adapter, and is
  the only path for Sequence-AltUp, whose layers mix positions of the sequence.
Decoder self-attention attends to every earlier position (no token masking), as a
teacher-forced pass with all-nonzero `decoder_target_tokens` does. The loops over
these steps are `decoding.greedy_decode` and `beam_search.beam_search`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

PAD_ID = 0
EOS_ID = 1
START_ID = 0  # the decoder's first input token, as in T5


def real_rows(encoder_input_tokens: Array, mask: Array | None = None) -> Array:
    """[B] True for rows to decode: some encoder token is not padding and mask != 0."""
    real = jnp.any(encoder_input_tokens != PAD_ID, axis=-1)
    if mask is not None:
        real = real & (jnp.asarray(mask) != 0)
    return real


def encode(module: nn.Module, params: Any, encoder_input_tokens: Array) -> Any:
    """The module's encoded inputs (`EncodedInputs`) in evaluation mode."""
    return module.apply({"params": params}, encoder_input_tokens, train=False, method="encode")


@dataclasses.dataclass(frozen=True)
class Stepper:
    """One-token decoder steps over N rows, whatever the state (cache or token buffer).

    init() -> the state before position 0;
    step(state, tokens [N], position) -> (logits [N, V] of `position`, state), where
        `tokens` are the decoder inputs at `position` (START, then the outputs at
        position - 1); positions go 0, 1, ... in order;
    reorder(state, rows [N]) -> the state of rows `rows` (beam search).
    """

    init: Callable[[], Any]
    step: Callable[[Any, Array, Array], tuple[Array, Any]]
    reorder: Callable[[Any, Array], Any]


def _path_name(path: tuple) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def reorder_cache(cache: Any, rows: Array) -> Any:
    """The decoding cache of rows `rows`: self-attention keys/values are gathered.

    Scalars (`cache_index`, `position`) are shared by all rows, and the projected
    memory (`memory_*`) is the same for all beams of an example, so both are kept.
    """

    def take(path: tuple, x: Array) -> Array:
        if x.ndim == 0 or _path_name(path).startswith("memory_"):
            return x
        return jnp.take(x, rows, axis=0)

    return jax.tree_util.tree_map_with_path(take, cache)


def _decode_step(
    module: nn.Module, params: Any, encoded: Any, cache: Any, tokens: Array, max_length: int
) -> tuple[Array, Any]:
    """(logits [N, V], cache) of one `decode_step`; without a cache, flax creates it."""
    variables = {"params": params} if cache is None else {"params": params, "cache": cache}
    logits, mutated = module.apply(
        variables,
        encoded,
        tokens[:, None],
        decode_length=max_length,
        method="decode_step",
        mutable=["cache"],
    )
    return logits[:, 0], mutated["cache"]


def init_cache(module: nn.Module, params: Any, encoded: Any, max_length: int) -> Any:
    """The decoding cache of N = len(encoded) rows before position 0.

    One `decode_step` without a cache makes flax create every variable of the `cache`
    collection: zero `cached_key` / `cached_value` [N, max_length, H, d_kv], the
    projected encoder memory `memory_key` / `memory_value` [N, Li, H, d_kv] of every
    cross-attention, and the positions. That call also writes its token at position 0;
    everything but the projected memory is reset to zeros, so the rest of the call is
    dead code that XLA drops.
    """
    start = jnp.full((encoded.tokens.shape[0],), START_ID, jnp.int32)
    _, cache = _decode_step(module, params, encoded, None, start, max_length)

    def reset(path: tuple, x: Array) -> Array:
        return x if _path_name(path).startswith("memory_") else jnp.zeros_like(x)

    return jax.tree_util.tree_map_with_path(reset, cache)


def cached_stepper(module: nn.Module, params: Any, encoded: Any, max_length: int) -> Stepper:
    """Steps through `decode_step` with the `cache` collection (`init_cache`) as the state."""

    def init() -> Any:
        return init_cache(module, params, encoded, max_length)

    def step(cache: Any, tokens: Array, position: Array) -> tuple[Array, Any]:
        del position  # the cache keeps its own
        return _decode_step(module, params, encoded, cache, tokens, max_length)

    return Stepper(init, step, reorder_cache)


def uncached_stepper(module: nn.Module, params: Any, encoded: Any, max_length: int) -> Stepper:
    """Steps that rerun the whole decoder on the [N, max_length] input buffer (the state).

    Positions after the current one hold stale or start tokens; the causal mask keeps
    them from the current position's logits.
    """
    rows = encoded.tokens.shape[0]
    targets = jnp.ones((rows, max_length), jnp.int32)  # every position attendable

    def run(inputs: Array, position: Array) -> Array:
        logits = module.apply(
            {"params": params}, encoded, inputs, targets, train=False, method="decode"
        )
        return jax.lax.dynamic_index_in_dim(logits, position, axis=1, keepdims=False)

    def init() -> Array:
        return jnp.full((rows, max_length), START_ID, jnp.int32)

    def step(inputs: Array, tokens: Array, position: Array) -> tuple[Array, Array]:
        inputs = inputs.at[:, position].set(tokens)
        return run(inputs, position), inputs

    def reorder(inputs: Array, rows_: Array) -> Array:
        return jnp.take(inputs, rows_, axis=0)

    return Stepper(init, step, reorder)


def make_stepper(
    module: nn.Module, params: Any, encoded: Any, max_length: int, use_cache: bool
) -> Stepper:
    """The cached or uncached stepper; refuses the cache where the adapter has none."""
    if use_cache:
        adapter = getattr(module, "adapter", None)
        if adapter is not None and not adapter.supports_decode_cache():
            raise ValueError(
                f"{type(adapter).__name__} has no cached one-token step; use use_cache=False"
            )
        return cached_stepper(module, params, encoded, max_length)
    return uncached_stepper(module, params, encoded, max_length)
