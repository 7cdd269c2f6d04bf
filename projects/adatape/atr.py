"""Adaptive Tape Reading (ATR): read a variable number of tape tokens from a bank.

Per example, ATR keeps a query q, a halting sum H, a ponder cost R, a tape length n and
a mask of bank entries already read. Each of `max_tape_tokens` steps (a `lax.scan` of
static length) scores the unread bank entries against q, softmax-weights the
`num_candidates` best, emits their weighted sum as one tape token, and adds the best
weight to H; an example stops once H reaches `halting_threshold`. Once every example in the
batch has stopped, the remaining steps are skipped (`lax.cond`) and emit zeros.

Differences from the released code, on purpose: the top-k scores are taken per example
(`take_along_axis`; the release gave every example row 0's scores) and the outputs say
which tape slots are valid so that callers can mask the unread ones. Options that
differ from the release by default: query noise is drawn afresh for every read and added
to the normalised scoring query (`query_noise='per_read'`; `'release'` draws it once and
adds it to the raw query before the LayerNorm, so it carries through every query
update), and the candidates per read are a free `num_candidates` (0 gives the release's
max_tape_tokens // halting_threshold). Once a read finds fewer than k unread entries it
takes read ones too, with weights near 0 while any unread one remains (as the release).

Gradients flow through the weights w (into the query and the bank) and through the
emitted values; the top-k choice, the halting comparisons and n carry none.

Precision: ATR runs in float32 whatever the model's compute dtype (its query and bank
are cast on entry, its LayerNorm, scores, softmax weights, halting sums H, ponder R and
the emitted tape are float32), so the reading order and the tape length n do not
change with bfloat16 compute; the caller casts the tape back to its own dtype. ATR is
cheap next to the blocks (T reads of B x N x key_dim scores).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from framework.errors import ConfigError
from framework.models import partitioning as pt

if TYPE_CHECKING:  # settings.py imports this module, for the option tables below
    from projects.adatape.settings import AdaTapeSettings

Array = jax.Array

# Subtracted from the scores of bank entries that may not be read (already read or
# masked); large enough that they are never among the top k while unread ones remain.
_BLOCKED_PENALTY = 1e9


def _sum_sq_cost(weights: Array) -> Array:
    return 1.0 - jnp.sum(weights**2, axis=-1)


def _max_cost(weights: Array) -> Array:
    return 1.0 - jnp.max(weights, axis=-1)


def _average_update(query: Array, emitted: Array) -> Array:
    return (query + emitted) / 2


def _replace_update(query: Array, emitted: Array) -> Array:
    del query
    return emitted


def _gap_query(tokens: Array) -> Array:
    return tokens.mean(axis=1, dtype=jnp.float32)


def _token_query(tokens: Array) -> Array:
    return tokens[:, 0].astype(jnp.float32)


# ATR's options by config value: `AdaTapeSettings` accepts exactly these keys.
# model.step_cost: the ponder cost of one read from its weights [B, k] -> [B].
STEP_COSTS: dict[str, Callable[[Array], Array]] = {"sum_sq": _sum_sq_cost, "max": _max_cost}
# model.query_update: the next query from the last one and the emitted token (key_dim wide).
QUERY_UPDATES: dict[str, Callable[[Array, Array], Array]] = {
    "average": _average_update,
    "replace": _replace_update,
}
# model.query_noise: where training noise enters the query (see the module docstring).
QUERY_NOISES = ("per_read", "release")
# model.query_source: the first query from [B, L, D] tokens, their mean or the class token
# (float32, whatever the tokens' dtype).
QUERY_SOURCES: dict[str, Callable[[Array], Array]] = {"gap": _gap_query, "token": _token_query}


@flax.struct.dataclass
class TapeReading:
    """What ATR read, per example ([B, ...]); T = max_tape_tokens, k = num_candidates."""

    tape: Array  # [B, T, D] float32 emitted tape tokens; zero in slots t >= length
    valid: Array  # [B, T] bool, slot t < length
    length: Array  # [B] int32, tape tokens read (n)
    ponder: Array  # [B] float32 ponder cost R
    halting: Array  # [B] float32 final halting sum H
    indices: Array  # [B, T, k] int32 bank entries read at each step (0 where not read)
    weights: Array  # [B, T, k] float32 their weights (0 where not read)
    used: Array  # [B, N] bool, bank entries read


class _Bank:
    """Scoring and gathering for a per-example [B, N, D] or shared [N, D] bank."""

    def __init__(self, tokens: Array, key_dim: int):
        self.tokens = tokens
        self.keys = tokens[..., :key_dim]
        self.shared = tokens.ndim == 2

    @property
    def size(self) -> int:
        return self.tokens.shape[-2]

    def scores(self, q: Array) -> Array:
        """[B, dk] queries -> [B, N] dot products with the keys."""
        if self.shared:
            return q @ self.keys.T
        return jnp.einsum("bd,bnd->bn", q, self.keys)

    def gather(self, indices: Array) -> Array:
        """[B, k] entry indices -> [B, k, D] bank tokens."""
        if self.shared:
            return self.tokens[indices]
        return jnp.take_along_axis(self.tokens, indices[..., None], axis=1)


class AdaptiveTapeReading(nn.Module):
    """Reads up to `max_tape_tokens` tape tokens per example from a bank.

    Call with a query [B, D] and a bank [B, N, D] (per example) or [N, D] (shared),
    optionally with `bank_valid` [B, N] (False: a padding entry, blocked like an entry
    already read); returns a `TapeReading`, computed in float32 (see the module
    docstring) from inputs of any float dtype. Query and bank share one LayerNorm; keys
    are the first `key_dim` features of the normalised bank, and the query is cut to as
    many.
    Training-only options: Gaussian query noise (`query_noise_std`, where as
    `query_noise` says) and masking each bank entry with probability `bank_mask_rate`;
    both draw from the 'dropout' RNG stream. `settings` must be resolved (`key_dim` and
    `num_candidates` set).
    """

    settings: AdaTapeSettings

    @nn.compact
    def __call__(
        self, query: Array, bank: Array, *, train: bool, bank_valid: Array | None = None
    ) -> TapeReading:
        s = self.settings
        if s.key_dim is None:
            raise ValueError("AdaptiveTapeReading needs resolved settings (key_dim is None)")
        batch, width = query.shape
        # float32 throughout: halting decisions must not depend on the compute dtype.
        query, bank = query.astype(jnp.float32), bank.astype(jnp.float32)
        if not s.num_candidates or s.num_candidates > bank.shape[-2]:
            # Known only once the bank's size is: raised while the model is first traced,
            # before anything is written.
            raise ConfigError(
                f"a bank of {bank.shape[-2]} entries cannot supply {s.num_candidates} distinct "
                "candidates per read; lower config.model.num_candidates"
            )
        if train and s.query_noise_std > 0 and s.query_noise == "release":
            rng = self.make_rng("dropout")
            noise = s.query_noise_std * jax.random.normal(rng, query.shape, query.dtype)
            self.sow("intermediates", "query_noise", noise)
            query = query + noise
        norm = pt.layer_norm(name="norm")  # float32; shared by the query and the bank
        q0 = norm(query)[:, : s.key_dim]
        source = _Bank(norm(bank), s.key_dim)
        steps, k, dk = s.max_tape_tokens, s.num_candidates, s.key_dim
        threshold = s.halting_threshold

        blocked = jnp.zeros((batch, source.size), bool)
        if bank_valid is not None:  # [B, N] or [N]: entries that exist (not padding)
            blocked = jnp.broadcast_to(~bank_valid, blocked.shape)
        noise = jnp.zeros((steps, batch, dk), q0.dtype)
        if train and s.bank_mask_rate > 0:
            rng = self.make_rng("dropout")
            blocked = blocked | jax.random.bernoulli(rng, s.bank_mask_rate, blocked.shape)
        if train and s.query_noise_std > 0 and s.query_noise == "per_read":
            rng = self.make_rng("dropout")
            noise = s.query_noise_std * jax.random.normal(rng, noise.shape, q0.dtype)

        def read(carry: tuple[Array, ...], noise_t: Array) -> tuple[tuple[Array, ...], Any]:
            q, halting, ponder, length, used = carry
            running = halting < threshold
            scores = source.scores(q + noise_t)
            scores = jnp.where(used | blocked, scores - _BLOCKED_PENALTY, scores)
            _, indices = jax.lax.top_k(jax.lax.stop_gradient(scores), k)
            top = jnp.take_along_axis(scores, indices, axis=-1)
            weights = jax.nn.softmax(top / jnp.sqrt(jnp.asarray(dk, top.dtype)), axis=-1)
            best = jax.lax.stop_gradient(weights[:, 0])  # top_k sorts: the best is first
            halted_now = running & (halting + best >= threshold)
            still = running & ~halted_now
            reads = running.astype(weights.dtype)

            ponder = ponder + reads * STEP_COSTS[s.step_cost](weights)
            halting = jnp.where(halted_now, threshold, halting + best * still)
            length = length + running.astype(length.dtype)
            weights = weights * reads[:, None]
            emitted = jnp.einsum("bk,bkd->bd", weights, source.gather(indices))
            # Elementwise rather than a scatter, so it stays local to each batch shard.
            read_now = jnp.any(indices[..., None] == jnp.arange(source.size), axis=1)
            used = used | (read_now & running[:, None])
            new_q = QUERY_UPDATES[s.query_update](q, emitted[:, :dk])
            q = jnp.where(running[:, None], new_q, q)
            indices = jnp.where(running[:, None], indices, 0)
            return (q, halting, ponder, length, used), (emitted, indices, weights)

        def skip(carry: tuple[Array, ...], noise_t: Array) -> tuple[tuple[Array, ...], Any]:
            del noise_t
            outputs = (
                jnp.zeros((batch, width), source.tokens.dtype),
                jnp.zeros((batch, k), jnp.int32),
                jnp.zeros((batch, k), q0.dtype),
            )
            return carry, outputs

        def step(carry: tuple[Array, ...], noise_t: Array) -> tuple[tuple[Array, ...], Any]:
            if not s.atr_early_exit:
                return read(carry, noise_t)
            any_running = jnp.any(carry[1] < threshold)
            return jax.lax.cond(any_running, read, skip, carry, noise_t)

        init = (
            q0,
            jnp.zeros((batch,), q0.dtype),
            jnp.zeros((batch,), q0.dtype),
            jnp.zeros((batch,), jnp.int32),
            jnp.zeros((batch, source.size), bool),
        )
        (_, halting, ponder, length, used), (tape, indices, weights) = jax.lax.scan(
            step, init, noise
        )
        tape = jnp.swapaxes(tape, 0, 1)
        return TapeReading(
            tape=tape,
            valid=jnp.arange(steps)[None, :] < length[:, None],
            length=length,
            ponder=ponder,
            halting=halting,
            indices=jnp.swapaxes(indices, 0, 1),
            weights=jnp.swapaxes(weights, 0, 1),
            used=used,
        )
