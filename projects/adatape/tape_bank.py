"""Tape banks: the tokens ATR reads from.

- `input`: made from the input itself. For images, a finer patch embedding of the raw
  image (`bank_patch_size`) with its own learned position embedding, then a Dense layer
  ([B, N, D]). For parity, a Dense projection of each position's one-hot symbol, with
  optional learned position information ([B, L, D]); its kernel starts random or at
  zero (`bank_init`: every entry then equals the bias, so no symbol is preferred at
  init and ATR's preference is learnt rather than inherited from the init).
- `learn`: a parameter [bank_size, D] shared by all examples (truncated normal, std
  0.02).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from framework.models import layers, vit

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

    @nn.compact
    def __call__(self, images: Array) -> Array:
        x = vit.PatchEmbedding(self.hidden_size, self.patch_size, name="patch_embedding")(images)
        x = layers.AddPositionEmbedding(name="pos_embedding")(x)
        return nn.Dense(self.hidden_size, name="projection")(x)


class SymbolTapeBank(nn.Module):
    """[B, L, F] per-position features -> [B, L, D]; optional learned position info."""

    hidden_size: int
    position: str  # one of BANK_POSITIONS: none (as released) | learned
    initializer: str = "lecun_normal"  # one of BANK_INITS

    @nn.compact
    def __call__(self, symbols: Array) -> Array:
        x = nn.Dense(self.hidden_size, kernel_init=BANK_INITS[self.initializer], name="projection")(
            symbols
        )
        if self.position == "learned":
            x = layers.AddPositionEmbedding(name="pos_embedding")(x)
        return x


class LearnedTapeBank(nn.Module):
    """A learned bank [bank_size, D], the same for every example."""

    bank_size: int
    hidden_size: int

    @nn.compact
    def __call__(self) -> Array:
        return self.param(
            "bank",
            nn.initializers.truncated_normal(stddev=0.02),
            (self.bank_size, self.hidden_size),
        )
