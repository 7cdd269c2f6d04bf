"""Adaptive Tape Reading (ATR): read a variable number of tape tokens from a bank.

Per example, ATR keeps a query q, a halting sum H, a ponder cost R, a tape length n and
a mask of bank entries already read. Each of `max_tape_tokens` steps (a `lax.scan` of
static length) scores the unread bank entries against q, softmax-weights the
`num_candidates` best, emits their weighted sum as one tape token, and adds the best
weight to H; an example stops once H reaches `threshold`. Once every example in the
batch has stopped, the remaining steps are skipped (`lax.cond`) and emit zeros.

Differences from the released code, on purpose: the top-k scores are taken per example
(`take_along_axis`; the release gave every example row 0's scores) and the outputs say
which tape slots are valid so that callers can mask the unread ones.

Gradients flow through the weights w (into the query and the bank) and through the
emitted values; the top-k choice, the halting comparisons and n carry none.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

Array = jax.Array

# Subtracted from the scores of bank entries that may not be read (already read or
# masked); large enough that they are never among the top k while unread ones remain.
_BLOCKED_PENALTY = 1e9

STEP_COSTS = ("sum_sq", "max")
QUERY_UPDATES = ("average", "replace")


@flax.struct.dataclass
class TapeReading:
    """What ATR read, per example ([B, ...]); T = max_tape_tokens, k = num_candidates."""

    tape: Array  # [B, T, D] emitted tape tokens; zero in slots t >= length
    valid: Array  # [B, T] bool, slot t < length
    length: Array  # [B] int32, tape tokens read (n)
    ponder: Array  # [B] ponder cost R
    halting: Array  # [B] final halting sum H
    indices: Array  # [B, T, k] int32 bank entries read at each step (0 where not read)
    weights: Array  # [B, T, k] their weights (0 where not read)
    used: Array  # [B, N] bool, bank entries read


def query_from_tokens(tokens: Array, source: str) -> Array:
    """The ATR query from [B, L, D] tokens: `gap` (mean) or `token` (the class token)."""
    if source == "gap":
        return tokens.mean(axis=1)
    if source == "token":
        return tokens[:, 0]
    raise ValueError(f"query source must be 'gap' or 'token', got {source!r}")


def step_cost(weights: Array, kind: str) -> Array:
    """Ponder cost of one read: 1 - sum(w^2) (`sum_sq`) or 1 - max(w) (`max`)."""
    if kind == "sum_sq":
        return 1.0 - jnp.sum(weights**2, axis=-1)
    if kind == "max":
        return 1.0 - jnp.max(weights, axis=-1)
    raise ValueError(f"step cost must be one of {STEP_COSTS}, got {kind!r}")


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

    Call with a query [B, D] and a bank [B, N, D] (per example) or [N, D] (shared);
    returns a `TapeReading`. Query and bank share one LayerNorm; keys are the first
    `key_dim` features of the normalised bank, and the query is cut to as many.
    Training-only options: Gaussian noise on the scoring query (`query_noise_std`) and
    masking each bank entry with probability `bank_mask_rate`; both draw from the
    'dropout' RNG stream.
    """

    key_dim: int
    max_tape_tokens: int = 10
    num_candidates: int = 5
    threshold: float = 2.0
    step_cost: str = "sum_sq"
    query_update: str = "average"
    query_noise_std: float = 0.0
    bank_mask_rate: float = 0.0
    early_exit: bool = True

    def _check(self, bank_size: int, width: int) -> None:
        if self.step_cost not in STEP_COSTS:
            raise ValueError(f"ATR step_cost must be one of {STEP_COSTS}, got {self.step_cost!r}")
        if self.query_update not in QUERY_UPDATES:
            raise ValueError(
                f"ATR query_update must be one of {QUERY_UPDATES}, got {self.query_update!r}"
            )
        if not 0 < self.key_dim <= width:
            raise ValueError(f"ATR key_dim {self.key_dim} must lie in [1, {width}]")
        if self.num_candidates * self.max_tape_tokens > bank_size:
            raise ValueError(
                f"a bank of {bank_size} entries cannot supply {self.max_tape_tokens} reads of "
                f"{self.num_candidates} distinct candidates; lower max_tape_tokens or "
                "num_candidates"
            )

    @nn.compact
    def __call__(self, query: Array, bank: Array, *, train: bool) -> TapeReading:
        batch, width = query.shape
        self._check(bank.shape[-2], width)
        norm = nn.LayerNorm(name="norm")  # shared by the query and the bank
        q0 = norm(query)[:, : self.key_dim]
        source = _Bank(norm(bank), self.key_dim)
        steps, k, dk = self.max_tape_tokens, self.num_candidates, self.key_dim

        blocked = jnp.zeros((batch, source.size), bool)
        noise = jnp.zeros((steps, batch, dk), q0.dtype)
        if train and self.bank_mask_rate > 0:
            rng = self.make_rng("dropout")
            blocked = jax.random.bernoulli(rng, self.bank_mask_rate, blocked.shape)
        if train and self.query_noise_std > 0:
            rng = self.make_rng("dropout")
            noise = self.query_noise_std * jax.random.normal(rng, noise.shape, q0.dtype)

        def read(carry: tuple[Array, ...], noise_t: Array) -> tuple[tuple[Array, ...], Any]:
            q, halting, ponder, length, used = carry
            running = halting < self.threshold
            scores = source.scores(q + noise_t)
            scores = jnp.where(used | blocked, scores - _BLOCKED_PENALTY, scores)
            _, indices = jax.lax.top_k(jax.lax.stop_gradient(scores), k)
            top = jnp.take_along_axis(scores, indices, axis=-1)
            weights = jax.nn.softmax(top / jnp.sqrt(jnp.asarray(dk, top.dtype)), axis=-1)
            best = jax.lax.stop_gradient(weights[:, 0])  # top_k sorts: the best is first
            halted_now = running & (halting + best >= self.threshold)
            still = running & ~halted_now
            reads = running.astype(weights.dtype)

            ponder = ponder + reads * step_cost(weights, self.step_cost)
            halting = jnp.where(halted_now, self.threshold, halting + best * still)
            length = length + running.astype(length.dtype)
            weights = weights * reads[:, None]
            emitted = jnp.einsum("bk,bkd->bd", weights, source.gather(indices))
            # Elementwise rather than a scatter, so it stays local to each batch shard.
            read_now = jnp.any(indices[..., None] == jnp.arange(source.size), axis=1)
            used = used | (read_now & running[:, None])
            if self.query_update == "average":
                new_q = (q + emitted[:, :dk]) / 2
            else:
                new_q = emitted[:, :dk]
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
            if not self.early_exit:
                return read(carry, noise_t)
            any_running = jnp.any(carry[1] < self.threshold)
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
