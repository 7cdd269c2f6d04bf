"""AltUp variants as T5 `StackAdapter`s: how states enter, pass and leave a stack.

- AltUp: a K*d-wide embedding split into K blocks; the encoder memory is the sum of
  the blocks (our choice), the decoder output the concatenation (K*d wide final norm
  and output projection).
- Recycled-AltUp: the d-wide embedding copied into K blocks; both stacks sum the
  blocks back to d before the final norm.
- Sequence-AltUp: d-wide states, each layer computed on every s-th position.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework.models.t5 import StackAdapter
from framework.errors import ConfigError
from projects.altup.layers import ACTIVE_MODES, AltUpLayer, SequenceAltUpLayer

Array = jax.Array

VARIANTS = ("none", "altup", "recycled", "sequence")


@dataclasses.dataclass(frozen=True)
class BlocksAdapter(StackAdapter):
    """K blocks of width d, stacked as [K, B, L, d]; every layer an `AltUpLayer`."""

    k: int = 2
    active: str = "alternating"

    def wrap_layer(self, make_layer: Callable[..., nn.Module], index: int, name: str):
        return AltUpLayer(
            layer=make_layer(parent=None), index=index, k=self.k, active=self.active, name=name
        )

    def memory(self, state: Array) -> Array:
        return state.sum(axis=0)


@dataclasses.dataclass(frozen=True)
class AltUpAdapter(BlocksAdapter):
    """AltUp: K*d-wide embedding split into blocks; output is their concatenation."""

    def embedding_features(self, d_model: int) -> int:
        return self.k * d_model

    def expand(self, embedded: Array) -> Array:
        return jnp.stack(jnp.split(embedded, self.k, axis=-1))

    def output(self, state: Array) -> Array:
        return jnp.concatenate(list(state), axis=-1)


@dataclasses.dataclass(frozen=True)
class RecycledAltUpAdapter(BlocksAdapter):
    """Recycled-AltUp: the d-wide embedding copied K times; output is the blocks' sum."""

    def expand(self, embedded: Array) -> Array:
        return jnp.broadcast_to(embedded[None], (self.k,) + embedded.shape)

    def output(self, state: Array) -> Array:
        return state.sum(axis=0)


@dataclasses.dataclass(frozen=True)
class SequenceAltUpAdapter(StackAdapter):
    """Sequence-AltUp: every layer a `SequenceAltUpLayer` with stride s."""

    stride: int = 2

    def wrap_layer(self, make_layer: Callable[..., nn.Module], index: int, name: str):
        return SequenceAltUpLayer(
            layer=make_layer(parent=None), index=index, stride=self.stride, name=name
        )


def default_altup_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.variant = "altup"  # none | altup | recycled | sequence
    c.k = 2  # blocks (altup, recycled)
    c.active = "alternating"  # alternating (block l mod K) | same (block 0)
    c.sequence_stride = 2  # sequence: layer l computes positions t = l (mod s)
    return c


def adapter_from_config(c: ml_collections.ConfigDict) -> StackAdapter:
    """The adapter for `config.model.altup`; one-line errors for bad values."""
    if c.variant not in VARIANTS:
        raise ConfigError(f"model.altup.variant must be one of {VARIANTS}, got {c.variant!r}")
    if c.active not in ACTIVE_MODES:
        raise ConfigError(f"model.altup.active must be one of {ACTIVE_MODES}, got {c.active!r}")
    if int(c.k) < 1:
        raise ConfigError(f"model.altup.k must be >= 1, got {c.k}")
    if int(c.sequence_stride) < 1:
        raise ConfigError(f"model.altup.sequence_stride must be >= 1, got {c.sequence_stride}")
    if c.variant == "altup":
        return AltUpAdapter(k=int(c.k), active=c.active)
    if c.variant == "recycled":
        return RecycledAltUpAdapter(k=int(c.k), active=c.active)
    if c.variant == "sequence":
        return SequenceAltUpAdapter(stride=int(c.sequence_stride))
    return StackAdapter()
