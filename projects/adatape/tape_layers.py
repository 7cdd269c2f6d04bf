"""Layers that run on [tokens ; tape]: the tape GLU MLP and blocks with a tape FFN.

The tape occupies the last `num_tape` positions of the sequence. `valid` ([B, L]) marks
the positions that take part: unread tape slots are masked out of attention (as keys)
and out of pooling, so they cannot change any other token.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from framework.models import layers

Array = jax.Array


class TapeGLU(nn.Module):
    """Dense(2m) -> GLU (a * sigmoid(b)) -> Dense(d): transforms tape tokens."""

    mlp_dim: int

    @nn.compact
    def __call__(self, tape: Array) -> Array:
        hidden = nn.Dense(2 * self.mlp_dim, name="fc1")(tape)
        a, b = jnp.split(hidden, 2, axis=-1)
        return nn.Dense(tape.shape[-1], name="fc2")(a * nn.sigmoid(b))


class SeparateTapeFFNBlock(nn.Module):
    """Pre-LN block: joint attention over all tokens, separate MLPs for tape tokens."""

    num_heads: int
    mlp_dim: int
    num_tape: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        y = nn.LayerNorm(name="ln_attention")(x)
        x = x + layers.SelfAttention(
            self.num_heads, self.dropout_rate, self.attention_dropout_rate, name="self_attention"
        )(y, valid, train=train)
        split = x.shape[1] - self.num_tape
        tokens, tape = x[:, :split], x[:, split:]
        y = nn.LayerNorm(name="ln_mlp")(tokens)
        tokens = tokens + layers.MlpBlock(self.mlp_dim, dropout_rate=self.dropout_rate, name="mlp")(
            y, train=train
        )
        y = nn.LayerNorm(name="ln_tape_mlp")(tape)
        tape = tape + layers.MlpBlock(
            self.mlp_dim, dropout_rate=self.dropout_rate, name="tape_mlp"
        )(y, train=train)
        return jnp.concatenate([tokens, tape], axis=1)


class TapeBlocks(nn.Module):
    """The encoder blocks after tape insertion, then the final LayerNorm.

    Blocks are named `block_{first_index + i}` so that a model's blocks are numbered
    through the insertion point.
    """

    num_layers: int
    num_heads: int
    mlp_dim: int
    num_tape: int
    first_index: int = 0
    separate_tape_ffn: bool = False
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: Array, valid: Array, *, train: bool) -> Array:
        for i in range(self.first_index, self.first_index + self.num_layers):
            if self.separate_tape_ffn:
                block = SeparateTapeFFNBlock(
                    self.num_heads,
                    self.mlp_dim,
                    self.num_tape,
                    self.dropout_rate,
                    self.attention_dropout_rate,
                    name=f"block_{i}",
                )
            else:
                block = layers.EncoderBlock(
                    self.num_heads,
                    self.mlp_dim,
                    self.dropout_rate,
                    self.attention_dropout_rate,
                    name=f"block_{i}",
                )
            x = block(x, valid, train=train)
        return nn.LayerNorm(name="ln_final")(x)
