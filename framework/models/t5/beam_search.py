"""Beam search over a T5-style decoder's one-token steps (`decode_steps.Stepper`).

T5X's beam search: K hypotheses per example, scores log p / brevity penalty
(`brevity_penalty`), finished hypotheses set aside until none alive can beat them.
The cache (or token buffer) of the steps is reordered with the beams; the encoder runs
once per call, its output repeated for the K beams of each example.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from framework.models.t5.decode_steps import (
    EOS_ID,
    PAD_ID,
    START_ID,
    encode,
    make_stepper,
    real_rows,
)

Array = jax.Array

DEFAULT_ALPHA = 0.6  # T5X's length-penalty exponent
NEG_INF = -1.0e9  # log-probability of an impossible hypothesis (finite: sums stay finite)


def brevity_penalty(alpha: float | Array, length: Array | int) -> Array:
    """T5X's length penalty ((5 + length) / 6) ** alpha; scores are log p / penalty."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _repeat_rows(tree: Any, times: int) -> Any:
    """Every array of `tree` with each row repeated `times` times (beams of an example)."""
    return jax.tree.map(lambda x: jnp.repeat(x, times, axis=0), tree)


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


jit_beam_search = jax.jit(
    beam_search,
    static_argnames=("module", "max_length", "beam_size", "use_cache", "eos_id"),
)
