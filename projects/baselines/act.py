"""Adaptive Computation Time (Graves, 2016) over a shared layer: the Universal
Transformer's depth-adaptive loop.

`layer` is applied up to `max_steps` times (the same parameters each time). After step
n the halting unit gives p_n = sigmoid(Dense(s_n)) (kernel zero-initialised, bias
`halting_bias_init`), per example (from the masked mean of the tokens) or per token.
An example (token) halts at the first step N where the sum of its p_n reaches
`threshold` (1 - act_epsilon), or at `max_steps`. Its output is sum_n w_n s_n with
w_n = p_n for n < N and w_N = R = 1 - sum_{n<N} p_n, so the weights sum to 1. The ponder
cost is N + R; gradients reach the halting unit through R.

Precision: the layer computes in its own dtype (that of `x`), but the halting unit,
the halting sums, the remainders, the weights and the weighted output sum are float32
(the summary is cast to float32 before the halting logit), so the halting decisions on
a batch do not depend on the compute dtype. Parameters are float32 with logical axis
names: the halting kernel (EMBED), the step embedding (LAYERS, EMBED).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from framework.config import fields
from framework.errors import ConfigError
from framework.models import layers
from framework.models import partitioning as pt

Array = jax.Array

HALTING_KINDS = ("example", "token")  # the values of `model.halting`


@dataclasses.dataclass(frozen=True)
class ACTSettings:
    """ACT's fields of `config.model`, named as their config keys."""

    max_steps: int | None = None  # most steps; None: the model's depth (see `resolved`)
    halting: str = "example"  # example | token: one halting unit per example or per token
    act_epsilon: float = 0.01  # halts once the halting sum reaches 1 - eps
    halting_bias_init: float = -1.0  # bias of the halting unit (its kernel starts at 0)
    step_embedding: bool = True  # learned embedding of the step, added before each step
    ponder_weight: float = 0.01  # the ponder loss is ponder_weight * (N + R)
    act_early_exit: bool = True  # skip the remaining steps once the whole batch halted

    def __post_init__(self) -> None:
        if self.max_steps is not None:
            fields.check_positive("model.max_steps", self.max_steps)
        fields.check_one_of("model.halting", self.halting, HALTING_KINDS)
        if not 0 < self.act_epsilon < 1:
            raise ConfigError(f"model.act_epsilon must lie in (0, 1), got {self.act_epsilon}")

    @property
    def threshold(self) -> float:
        """The halting sum at which an example (token) halts."""
        return 1.0 - self.act_epsilon

    def resolved(self, num_layers: int | None = None) -> ACTSettings:
        """A copy with `max_steps` set: None means `num_layers` (a model's depth)."""
        if self.max_steps is not None:
            return self
        if num_layers is None:
            raise ConfigError("model.max_steps must be set, got None")
        return dataclasses.replace(self, max_steps=num_layers)


# state, halted, sum of p before halting, remainder R, updates N, weighted output
_Carry = tuple[Array, Array, Array, Array, Array, Array]


@flax.struct.dataclass
class ACTOutput:
    """Halting shape H is [B] (per example) or [B, L] (per token); all but `output`
    are float32."""

    output: Array  # [B, L, D] halting-weighted sum of the step states (x's dtype)
    weights: Array  # [max_steps, *H] the weights w_n (0 after halting)
    updates: Array  # [*H] N, steps taken
    remainder: Array  # [*H] R
    ponder: Array  # [B] N + R (per-token: mean over valid tokens)
    mean_updates: Array  # [B] N (per-token: mean over valid tokens)


class AdaptiveComputationTime(nn.Module):
    """Runs `layer(x, valid, train=...)` under ACT; returns an `ACTOutput`.

    `settings` must be resolved (`max_steps` set). With `act_early_exit`, once every
    example (token) in the batch has halted the remaining steps are skipped
    (`lax.cond`); the results are the same as without it. `x` is in the compute dtype
    (the layer's); `output` comes back in it, the halting quantities in float32.
    """

    layer: nn.Module
    settings: ACTSettings

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> ACTOutput:
        s = self.settings
        if s.max_steps is None:
            raise ValueError("AdaptiveComputationTime needs resolved settings (max_steps None)")
        max_steps, per_token, threshold = s.max_steps, s.halting == "token", s.threshold
        width = x.shape[-1]
        kernel = self.param(
            "halting_kernel", pt.param_init(nn.initializers.zeros, pt.EMBED), (width,), jnp.float32
        )
        bias = self.param(
            "halting_bias",
            pt.param_init(nn.initializers.constant(s.halting_bias_init)),
            (),
            jnp.float32,
        )
        steps_emb = None
        if s.step_embedding:
            steps_emb = self.param(
                "step_embedding",
                pt.param_init(nn.initializers.normal(0.02), pt.LAYERS, pt.EMBED),
                (max_steps, width),
                jnp.float32,
            )
        rng = self.make_rng("dropout") if train and self.has_rng("dropout") else None

        def step(n: int, carry: _Carry, layer_fn) -> tuple[_Carry, Array]:
            state, halted, total, remainder, updates, output = carry
            if steps_emb is not None:
                state = state + steps_emb[n].astype(state.dtype)
            state = pt.constrain_tokens(layer_fn(pt.constrain_tokens(state)))
            # The halting unit in float32 (masked_mean_pool is float32 already).
            summary = (
                state.astype(jnp.float32) if per_token else layers.masked_mean_pool(state, valid)
            )
            p = nn.sigmoid(summary @ kernel + bias)
            running = ~halted
            if n == max_steps - 1:
                halts_now = running
            else:
                halts_now = running & (total + p >= threshold)
            still = running & ~halts_now
            w = jnp.where(still, p, jnp.where(halts_now, 1.0 - total, 0.0))
            remainder = jnp.where(halts_now, 1.0 - total, remainder)
            total = total + jnp.where(still, p, 0.0)
            updates = updates + running.astype(updates.dtype)
            halted = halted | halts_now
            w_tokens = w[..., None] if per_token else w[:, None, None]
            output = output + w_tokens * state.astype(jnp.float32)
            return (state, halted, total, remainder, updates, output), w

        # Step 0 runs the bound layer (creating its parameters at init); later steps run
        # it as a pure function of those parameters, so that they can sit in lax.cond.
        shape = x.shape[:2] if per_token else x.shape[:1]
        zeros = jnp.zeros(shape, jnp.float32)
        output = jnp.zeros(x.shape, jnp.float32)
        carry = (x, jnp.zeros(shape, bool), zeros, zeros, zeros, output)
        carry, w = step(0, carry, lambda s: self.layer(s, valid, train=train))
        weights = [w]
        layer_variables = self.layer.variables
        unbound_layer = self.layer.clone(parent=None)

        for n in range(1, max_steps):

            def layer_fn(s: Array, n: int = n) -> Array:
                rngs = {"dropout": jax.random.fold_in(rng, n)} if rng is not None else {}
                return unbound_layer.apply(layer_variables, s, valid, train=train, rngs=rngs)

            def run(c: _Carry, n: int = n, layer_fn=layer_fn) -> tuple[_Carry, Array]:
                return step(n, c, layer_fn)

            if s.act_early_exit:
                carry, w = jax.lax.cond(
                    jnp.any(~carry[1]), run, lambda c: (c, jnp.zeros_like(w)), carry
                )
            else:
                carry, w = run(carry)
            weights.append(w)

        _, _, _, remainder, updates, output = carry
        ponder = updates + remainder
        mean_updates = updates
        if per_token:
            ponder = _token_mean(ponder, valid)
            mean_updates = _token_mean(updates, valid)
        return ACTOutput(
            output=pt.constrain_tokens(output.astype(x.dtype)),
            weights=jnp.stack(weights),
            updates=updates,
            remainder=remainder,
            ponder=ponder,
            mean_updates=mean_updates,
        )


def _token_mean(values: Array, valid: Array | None) -> Array:
    """[B, L] -> [B] mean over valid tokens."""
    return layers.masked_mean_pool(values[..., None], valid)[..., 0]
