"""Layers that run on [tokens ; tape]: the tape GLU MLP and blocks with a tape FFN.

The tape occupies the last `num_tape` positions of the sequence. `valid` ([B, L]) marks
the positions that take part: unread tape slots are masked out of attention (as keys)
and out of pooling, so they cannot change any other token.

Every layer computes in its `dtype` with float32, logically named parameters; the
blocks are rematerialised by `remat` (`framework.models.partitioning`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from framework.models import layers
from framework.models import partitioning as pt

Array = jax.Array


class TapeGLU(nn.Module):
    """Dense(2m) -> GLU (a * sigmoid(b)) -> Dense(d): transforms tape tokens."""

    mlp_dim: int
    dtype: Any = jnp.float32  # computation; parameters are float32

    @nn.compact
    def __call__(self, tape: Array) -> Array:
        width = tape.shape[-1]
        hidden = pt.dense(2 * self.mlp_dim, (pt.EMBED, pt.MLP), dtype=self.dtype, name="fc1")(tape)
        a, b = jnp.split(hidden, 2, axis=-1)
        return pt.dense(width, (pt.MLP, pt.EMBED), dtype=self.dtype, name="fc2")(a * nn.sigmoid(b))


class SeparateTapeFFNBlock(layers.EncoderBlock, kw_only=True):
    """Pre-LN block: joint attention over all tokens, separate MLPs for the last
    `num_tape` (tape) tokens (`tape_mlp`, `ln_tape_mlp`)."""

    num_tape: int

    def feed_forward(self, x: Array, *, train: bool, prefix: str = "") -> Array:
        split = x.shape[1] - self.num_tape
        tokens = super().feed_forward(x[:, :split], train=train, prefix=prefix)
        tape = super().feed_forward(x[:, split:], train=train, prefix=f"{prefix}tape_")
        return jnp.concatenate([tokens, tape], axis=1)


class TapeBlocks(layers.Encoder, kw_only=True):
    """The encoder blocks after tape insertion, then the final LayerNorm.

    Blocks are named `block_{first_index + i}` so that a model's blocks are numbered
    through the insertion point.
    """

    num_tape: int
    first_index: int = 0
    separate_tape_ffn: bool = False

    def make_block(self, index: int) -> nn.Module:
        index += self.first_index
        if not self.separate_tape_ffn:
            return super().make_block(index)
        return pt.remat(SeparateTapeFFNBlock, self.remat)(
            **layers.block_kwargs(self), num_tape=self.num_tape, name=f"block_{index}"
        )
