"""Autoregressive decoding of T5-style models: greedy and beam search, cached or not.

A model here is a `T5Module`-like flax module with `encode(tokens, train=False)`,
`decode(encoded, decoder_inputs, decoder_targets, train=False)` and, for the cached
path, `decode_step(encoded, token [B, 1], decode_length=L)` (see `framework.models.t5`).
The decoder starts from token 0 (T5's start token, which is also padding), emits one
token per position up to `max_length` and stops per example at EOS (1); positions after
EOS hold padding (0). Nothing stops the model from emitting 0 itself (as in T5X).
Rows whose encoder input is all padding, or whose `mask` is 0 (padded batch rows),
decode to all zeros.

Two ways to run a step, both under `jax.jit` with static shapes:
- cached (`use_cache=True`): one token per step through `decode_step`, with the
  self-attention keys/values of every decoder layer and the projected encoder memory
  in flax's `cache` collection (`init_cache`).
- uncached (`use_cache=False`): every step reruns `decode` on the whole [B, max_length]
  buffer of decoder inputs (the causal mask hides positions not yet decoded) and
  reads the logits of the current position. This works for any stack adapter, and is
  the only path for Sequence-AltUp, whose layers mix positions of the sequence.
The encoder runs once per call in both. Decoder self-attention attends to every
earlier position (no token masking), as a teacher-forced pass with all-nonzero
`decoder_target_tokens` does.

`decode_batch` is the entry point for evaluation: a model object of
`framework.models.base` (e.g. `t5` / `t5_altup`), its parameters and a batch; it picks
the cache from the model's stack adapter (`supports_decode_cache`) unless told.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

Array = jax.Array

PAD_ID = 0
EOS_ID = 1
START_ID = 0  # the decoder's first input token, as in T5
DEFAULT_ALPHA = 0.6  # T5X's length-penalty exponent
NEG_INF = -1.0e9  # log-probability of an impossible hypothesis (finite: sums stay finite)
METHODS = ("greedy", "beam")


def brevity_penalty(alpha: float | Array, length: Array | int) -> Array:
    """T5X's length penalty ((5 + length) / 6) ** alpha; scores are log p / penalty."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def real_rows(encoder_input_tokens: Array, mask: Array | None = None) -> Array:
    """[B] True for rows to decode: some encoder token is not padding and mask != 0."""
    real = jnp.any(encoder_input_tokens != PAD_ID, axis=-1)
    if mask is not None:
        real = real & (jnp.asarray(mask) != 0)
    return real


def encode(module: nn.Module, params: Any, encoder_input_tokens: Array) -> Any:
    """The module's encoded inputs (`EncodedInputs`) in evaluation mode."""
    return module.apply({"params": params}, encoder_input_tokens, train=False, method="encode")


def _repeat_rows(tree: Any, times: int) -> Any:
    """Every array of `tree` with each row repeated `times` times (beams of an example)."""
    return jax.tree.map(lambda x: jnp.repeat(x, times, axis=0), tree)


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


@flax.struct.dataclass
class BeamState:
    """Per example: K alive hypotheses (no EOS yet) and the K best finished ones.

    alive_seqs / finished_seqs [B, K, L] (0 after the last token), alive_logp [B, K]
    (log-probability so far), alive_last [B, K] (the last token, the next input),
    finished_scores [B, K] (log p / brevity penalty, sorted best first; NEG_INF = empty).
    """

    alive_seqs: Array
    alive_logp: Array
    alive_last: Array
    finished_seqs: Array
    finished_scores: Array


def _take_beams(x: Array, index: Array) -> Array:
    """x [B, M, ...] at beams index [B, N] -> [B, N, ...]."""
    index = index.reshape(index.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1)


def _advance_beams(
    beams: BeamState,
    logits: Array,
    position: Array | int,
    *,
    max_length: int,
    alpha: float | Array,
    eos_id: int,
) -> tuple[BeamState, Array]:
    """Extends every alive hypothesis by one token; returns the beams and their origins.

    The 2K best extensions are the candidates (so K of them never end in EOS). A
    candidate ending in EOS finishes if it ranks among the step's top K (standard beam
    search of width K, finished hypotheses set aside); at the last position the top K
    finish whatever their token (truncated at `max_length`). The K best non-EOS
    candidates stay alive. Origins [B, K]: the alive beam each new alive one extends.
    """
    batch, k, _ = beams.alive_seqs.shape
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, k, -1)
    vocab = log_probs.shape[-1]
    candidates = (beams.alive_logp[..., None] + log_probs).reshape(batch, k * vocab)
    top_logp, top_index = jax.lax.top_k(candidates, 2 * k)
    origin = top_index // vocab
    token = (top_index % vocab).astype(jnp.int32)
    seqs = _take_beams(beams.alive_seqs, origin).at[:, :, position].set(token)
    is_eos = token == eos_id
    possible = top_logp > NEG_INF / 2
    in_beam = jnp.arange(2 * k)[None, :] < k
    finishes = (is_eos | (position == max_length - 1)) & in_beam & possible
    finished_now = jnp.where(finishes, top_logp / brevity_penalty(alpha, position + 1), NEG_INF)
    scores = jnp.concatenate([beams.finished_scores, finished_now], axis=1)
    finished_scores, keep = jax.lax.top_k(scores, k)
    finished_seqs = _take_beams(jnp.concatenate([beams.finished_seqs, seqs], axis=1), keep)
    alive_logp, alive = jax.lax.top_k(jnp.where(is_eos, NEG_INF, top_logp), k)
    new = BeamState(
        alive_seqs=_take_beams(seqs, alive),
        alive_logp=alive_logp,
        alive_last=jnp.take_along_axis(token, alive, axis=1),
        finished_seqs=finished_seqs,
        finished_scores=finished_scores,
    )
    return new, jnp.take_along_axis(origin, alive, axis=1)


def beam_search(
    module: nn.Module,
    params: Any,
    encoder_input_tokens: Array,
    *,
    max_length: int,
    beam_size: int = 4,
    alpha: float | Array = DEFAULT_ALPHA,
    use_cache: bool = True,
    mask: Array | None = None,
    eos_id: int = EOS_ID,
) -> tuple[Array, Array]:
    """Beam search: (best tokens [B, max_length] int32, their scores [B]).

    A score is log p(sequence, EOS included) / brevity_penalty(alpha, length), length
    counting EOS (T5X's length normalisation; alpha=0: plain log-probability). A
    hypothesis that reaches `max_length` without EOS is scored as it stands. An
    example stops when its K-th best finished score beats what its best alive
    hypothesis could still reach; the loop ends when all examples have. Beam size 1
    with alpha=0 is greedy decoding. Padded rows: zeros, score 0.
    """
    batch, k = encoder_input_tokens.shape[0], beam_size
    encoded = _repeat_rows(encode(module, params, encoder_input_tokens), k)
    stepper = make_stepper(module, params, encoded, max_length, use_cache)
    real = real_rows(encoder_input_tokens, mask)
    flat_base = (jnp.arange(batch) * k)[:, None]
    advance = functools.partial(_advance_beams, max_length=max_length, alpha=alpha, eos_id=eos_id)
    best_bound = brevity_penalty(alpha, max_length)  # log p <= 0 only shrinks, length grows

    zeros = jnp.zeros((batch, k, max_length), jnp.int32)
    first_alive = jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF)  # K copies of one start
    beams = BeamState(
        alive_seqs=zeros,
        alive_logp=jnp.broadcast_to(first_alive, (batch, k)).astype(jnp.float32),
        alive_last=jnp.full((batch, k), START_ID, jnp.int32),
        finished_seqs=zeros,
        finished_scores=jnp.full((batch, k), NEG_INF, jnp.float32),
    )

    def cond(carry) -> Array:
        position, _, _, done = carry
        return (position < max_length) & ~jnp.all(done)

    def body(carry):
        position, beams, state, _ = carry
        logits, state = stepper.step(state, beams.alive_last.reshape(-1), position)
        beams, origin = advance(beams, logits, position)
        state = stepper.reorder(state, (flat_base + origin).reshape(-1))
        unbeatable = beams.finished_scores[:, -1] >= beams.alive_logp[:, 0] / best_bound
        return position + 1, beams, state, ~real | unbeatable

    carry = (jnp.asarray(0, jnp.int32), beams, stepper.init(), ~real)
    beams = jax.lax.while_loop(cond, body, carry)[1]
    tokens = jnp.where(real[:, None], beams.finished_seqs[:, 0], PAD_ID)
    scores = jnp.where(real, beams.finished_scores[:, 0], 0.0)
    return tokens, scores


jit_greedy_decode = jax.jit(
    greedy_decode, static_argnames=("module", "max_length", "use_cache", "eos_id")
)
jit_beam_search = jax.jit(
    beam_search,
    static_argnames=("module", "max_length", "beam_size", "use_cache", "eos_id"),
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
