"""Adaptive Computation Time (Graves, 2016) over a shared layer: the Universal
Transformer's depth-adaptive loop.

`layer` is applied up to `max_steps` times (the same parameters each time). After step
n the halting unit gives p_n = sigmoid(Dense(s_n)) (kernel zero-initialised, bias
`halting_bias_init`), per example (from the masked mean of the tokens) or per token.
An example (token) halts at the first step N where the sum of its p_n reaches
`threshold` (1 - eps), or at `max_steps`. Its output is sum_n w_n s_n with
w_n = p_n for n < N and w_N = R = 1 - sum_{n<N} p_n, so the weights sum to 1. The ponder
cost is N + R; gradients reach the halting unit through R.
"""

from __future__ import annotations

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from framework.models import layers

Array = jax.Array

HALTING_KINDS = ("example", "token")


@flax.struct.dataclass
class ACTOutput:
    """Halting shape H is [B] (per example) or [B, L] (per token)."""

    output: Array  # [B, L, D] halting-weighted sum of the step states
    weights: Array  # [max_steps, *H] the weights w_n (0 after halting)
    updates: Array  # [*H] N, steps taken
    remainder: Array  # [*H] R
    ponder: Array  # [B] N + R (per-token: mean over valid tokens)
    mean_updates: Array  # [B] N (per-token: mean over valid tokens)


class AdaptiveComputationTime(nn.Module):
    """Runs `layer(x, valid, train=...)` under ACT; returns an `ACTOutput`."""

    layer: nn.Module
    max_steps: int
    halting: str = "example"  # example | token
    threshold: float = 0.99
    halting_bias_init: float = -1.0
    step_embedding: bool = True

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> ACTOutput:
        if self.halting not in HALTING_KINDS:
            raise ValueError(f"ACT halting must be one of {HALTING_KINDS}, got {self.halting!r}")
        halting_unit = nn.Dense(
            1,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.constant(self.halting_bias_init),
            name="halting",
        )
        if self.step_embedding:
            steps_emb = self.param(
                "step_embedding", nn.initializers.normal(0.02), (self.max_steps, x.shape[-1])
            )
        shape = x.shape[:1] if self.halting == "example" else x.shape[:2]
        dtype = x.dtype
        halted = jnp.zeros(shape, bool)
        total = jnp.zeros(shape, dtype)  # sum of p_n over the steps before halting
        remainder = jnp.zeros(shape, dtype)
        updates = jnp.zeros(shape, dtype)
        output = jnp.zeros_like(x)
        weights = []
        state = x
        for n in range(self.max_steps):
            if self.step_embedding:
                state = state + steps_emb[n]
            state = self.layer(state, valid, train=train)
            summary = state if self.halting == "token" else layers.masked_mean_pool(state, valid)
            p = nn.sigmoid(halting_unit(summary)[..., 0])
            running = ~halted
            if n == self.max_steps - 1:
                halts_now = running
            else:
                halts_now = running & (total + p >= self.threshold)
            still = running & ~halts_now
            w = jnp.where(still, p, jnp.where(halts_now, 1.0 - total, 0.0))
            remainder = jnp.where(halts_now, 1.0 - total, remainder)
            total = total + jnp.where(still, p, 0.0)
            updates = updates + running.astype(dtype)
            halted = halted | halts_now
            w_tokens = w[:, None, None] if self.halting == "example" else w[..., None]
            output = output + w_tokens * state
            weights.append(w)
        ponder = updates + remainder
        mean_updates = updates
        if self.halting == "token":
            ponder = _token_mean(ponder, valid)
            mean_updates = _token_mean(updates, valid)
        return ACTOutput(
            output=output,
            weights=jnp.stack(weights),
            updates=updates,
            remainder=remainder,
            ponder=ponder,
            mean_updates=mean_updates,
        )


def _token_mean(values: Array, valid: Array | None) -> Array:
    """[B, L] -> [B] mean over valid tokens."""
    return layers.masked_mean_pool(values[..., None], valid)[..., 0]
