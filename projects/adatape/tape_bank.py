"""Tape banks: the tokens ATR reads from.

- `input`: made from the input itself. For images, a finer patch embedding of the raw
  image (`bank_patch_size`) with its own learned position embedding, then a Dense layer
  ([B, N, D]). For parity, a Dense projection of each position's one-hot symbol, with
  optional learned position information ([B, L, D]); its kernel starts random or at
  zero (`bank_init`: every entry then equals the bias, so no symbol is preferred at
  init and ATR's preference is learnt rather than inherited from the init).
- `learn`: a parameter [bank_size, D] shared by all examples (truncated normal, std
  0.02).

Input banks compute in their `dtype` (the model's); the learned bank is a float32
parameter named (BANK, EMBED). ATR reads any of them in float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from framework.models import layers, vit
from framework.models import partitioning as pt

Array = jax.Array

# The values of `model.bank_type` and `model.bank_position` (checked by AdaTapeSettings).
BANK_TYPES = ("input", "learn")
BANK_POSITIONS = ("none", "learned")
# model.bank_init: the symbol bank projection's kernel initializer.
BANK_INITS = {"lecun_normal": nn.initializers.lecun_normal(), "zeros": nn.initializers.zeros}


class ImageTapeBank(nn.Module):
    """[B, H, W, C] image -> [B, (H/p)*(W/p), D] bank tokens."""

    hidden_size: int
    patch_size: int
    dtype: Any = jnp.float32  # computation; parameters are float32

    @nn.compact
    def __call__(self, images: Array) -> Array:
        x = vit.PatchEmbedding(
            self.hidden_size, self.patch_size, dtype=self.dtype, name="patch_embedding"
        )(images)
        x = layers.AddPositionEmbedding(name="pos_embedding")(x)
        x = pt.dense(self.hidden_size, (pt.EMBED, pt.EMBED), dtype=self.dtype, name="projection")(x)
        return pt.constrain_tokens(x)


class SymbolTapeBank(nn.Module):
    """[B, L, F] per-position features -> [B, L, D]; optional learned position info."""

    hidden_size: int
    position: str  # one of BANK_POSITIONS: none (as released) | learned
    initializer: str = "lecun_normal"  # one of BANK_INITS
    dtype: Any = jnp.float32  # computation; parameters are float32

    @nn.compact
    def __call__(self, symbols: Array) -> Array:
        x = pt.dense(
            self.hidden_size,
            (pt.UNSHARDED, pt.EMBED),
            dtype=self.dtype,
            kernel_init=BANK_INITS[self.initializer],
            name="projection",
        )(symbols)
        if self.position == "learned":
            x = layers.AddPositionEmbedding(name="pos_embedding")(x)
        return pt.constrain_tokens(x)


class LearnedTapeBank(nn.Module):
    """A learned bank [bank_size, D], the same for every example."""

    bank_size: int
    hidden_size: int

    @nn.compact
    def __call__(self) -> Array:
        init = pt.param_init(nn.initializers.truncated_normal(stddev=0.02), pt.BANK, pt.EMBED)
        return self.param("bank", init, (self.bank_size, self.hidden_size), jnp.float32)
