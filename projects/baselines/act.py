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

# state, halted, sum of p before halting, remainder R, updates N, weighted output
_Carry = tuple[Array, Array, Array, Array, Array, Array]


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
    """Runs `layer(x, valid, train=...)` under ACT; returns an `ACTOutput`.

    With `early_exit`, once every example (token) in the batch has halted the remaining
    steps are skipped (`lax.cond`); the results are the same as without it.
    """

    layer: nn.Module
    max_steps: int
    halting: str = "example"  # example | token
    threshold: float = 0.99
    halting_bias_init: float = -1.0
    step_embedding: bool = True
    early_exit: bool = True

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> ACTOutput:
        if self.halting not in HALTING_KINDS:
            raise ValueError(f"ACT halting must be one of {HALTING_KINDS}, got {self.halting!r}")
        width = x.shape[-1]
        kernel = self.param("halting_kernel", nn.initializers.zeros, (width,))
        bias = self.param("halting_bias", nn.initializers.constant(self.halting_bias_init), ())
        steps_emb = None
        if self.step_embedding:
            steps_emb = self.param(
                "step_embedding", nn.initializers.normal(0.02), (self.max_steps, width)
            )
        rng = self.make_rng("dropout") if train and self.has_rng("dropout") else None

        def step(n: int, carry: _Carry, layer_fn) -> tuple[_Carry, Array]:
            state, halted, total, remainder, updates, output = carry
            if steps_emb is not None:
                state = state + steps_emb[n]
            state = layer_fn(state)
            summary = state if self.halting == "token" else layers.masked_mean_pool(state, valid)
            p = nn.sigmoid(summary @ kernel + bias)
            running = ~halted
            if n == self.max_steps - 1:
                halts_now = running
            else:
                halts_now = running & (total + p >= self.threshold)
            still = running & ~halts_now
            w = jnp.where(still, p, jnp.where(halts_now, 1.0 - total, 0.0))
            remainder = jnp.where(halts_now, 1.0 - total, remainder)
            total = total + jnp.where(still, p, 0.0)
            updates = updates + running.astype(updates.dtype)
            halted = halted | halts_now
            w_tokens = w[:, None, None] if self.halting == "example" else w[..., None]
            output = output + w_tokens * state
            return (state, halted, total, remainder, updates, output), w

        # Step 0 runs the bound layer (creating its parameters at init); later steps run
        # it as a pure function of those parameters, so that they can sit in lax.cond.
        shape = x.shape[:1] if self.halting == "example" else x.shape[:2]
        zeros = jnp.zeros(shape, x.dtype)
        carry = (x, jnp.zeros(shape, bool), zeros, zeros, zeros, jnp.zeros_like(x))
        carry, w = step(0, carry, lambda s: self.layer(s, valid, train=train))
        weights = [w]
        layer_variables = self.layer.variables
        unbound_layer = self.layer.clone(parent=None)

        for n in range(1, self.max_steps):

            def layer_fn(s: Array, n: int = n) -> Array:
                rngs = {"dropout": jax.random.fold_in(rng, n)} if rng is not None else {}
                return unbound_layer.apply(layer_variables, s, valid, train=train, rngs=rngs)

            def run(c: _Carry, n: int = n, layer_fn=layer_fn) -> tuple[_Carry, Array]:
                return step(n, c, layer_fn)

            if self.early_exit:
                carry, w = jax.lax.cond(
                    jnp.any(~carry[1]), run, lambda c: (c, jnp.zeros_like(w)), carry
                )
            else:
                carry, w = run(carry)
            weights.append(w)

        _, _, _, remainder, updates, output = carry
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
