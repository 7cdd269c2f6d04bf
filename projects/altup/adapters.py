"""AltUp variants as T5 `StackAdapter`s: how states enter, pass and leave a stack.

- AltUp: a K*d-wide embedding split into K blocks; the encoder memory is the sum of
  the blocks (our choice); the decoder output is their concatenation (`readout=concat`:
  K*d wide final norm and output projection, the paper's) or their sum
  (`readout=sum`: the dense model's d-wide norm and projection, our option).
- Recycled-AltUp: the d-wide embedding copied into K blocks; both stacks sum the
  blocks back to d before the final norm.
- Sequence-AltUp: d-wide states, each layer computed on every s-th position.

Scale: each wrapper (`AltUpLayer`, `SequenceAltUpLayer`) is rematerialised as a whole
by the stack's policy (`pt.remat`), so only its input blocks are kept for the backward
pass. Every block is constrained to (batch, length, embed); the K*d-wide embedding and
concatenated readout keep one flattened width axis, named `embed` (its columns are
the K blocks side by side; a separate `altup` axis would change the parameter shapes).

AltUp and Recycled-AltUp decode one token at a time with the key/value cache of the
wrapped layers (embedding, predict / correct and readout are per position); Sequence-
AltUp mixes positions, so `supports_decode_cache` is False and decoding recomputes
the prefix every step.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from framework.config import fields
from framework.models import partitioning as pt
from framework.models.t5.stack import StackAdapter
from projects.altup.layers import ACTIVE_MODES, COMPUTE_INPUTS, AltUpLayer, SequenceAltUpLayer

Array = jax.Array

# The values of `model.altup.readout` (AltUp's decoder output: K*d or d wide).
READOUTS = ("concat", "sum")


def sum_blocks(blocks: tuple[Array, ...]) -> Array:
    """The d-wide sum of K blocks."""
    total = blocks[0]
    for block in blocks[1:]:
        total = total + block
    return total


@dataclasses.dataclass(frozen=True)
class AltUpSettings:
    """`config.model.altup`, named as its config keys: the variant and its sizes."""

    variant: str = "altup"  # none | altup | recycled | sequence
    k: int = 2  # blocks (altup, recycled)
    active: str = "alternating"  # alternating (block l mod K) | same (block 0)
    sequence_stride: int = 2  # sequence: layer l computes positions t = l (mod s)
    compute_input: str = "original"  # altup, recycled: layer(x_a) | "predicted": layer(xhat_a)
    readout: str = "concat"  # altup: decoder output of K*d (concat) or d (sum); recycled sums

    def __post_init__(self) -> None:
        fields.check_one_of("model.altup.variant", self.variant, VARIANTS)
        fields.check_one_of("model.altup.active", self.active, ACTIVE_MODES)
        fields.check_one_of("model.altup.compute_input", self.compute_input, COMPUTE_INPUTS)
        fields.check_one_of("model.altup.readout", self.readout, READOUTS)
        fields.check_positive("model.altup.k", self.k)
        fields.check_positive("model.altup.sequence_stride", self.sequence_stride)

    def adapter(self) -> StackAdapter:
        """The T5 stack adapter of `variant`."""
        return VARIANTS[self.variant](self)


@dataclasses.dataclass(frozen=True)
class BlocksAdapter(StackAdapter):
    """K blocks of width d, a tuple of K [B, L, d] arrays; every layer an `AltUpLayer`."""

    settings: AltUpSettings

    def wrap_layer(
        self, make_layer: Callable[..., nn.Module], index: int, name: str, *, remat: str = "none"
    ):
        s = self.settings
        return pt.remat(AltUpLayer, remat)(
            layer=make_layer(parent=None),
            index=index,
            k=s.k,
            active=s.active,
            compute_input=s.compute_input,
            name=name,
        )

    def memory(self, state: tuple[Array, ...]) -> Array:
        return sum_blocks(state)


@dataclasses.dataclass(frozen=True)
class AltUpAdapter(BlocksAdapter):
    """AltUp: K*d-wide embedding split into blocks; output their concatenation or sum."""

    def embedding_features(self, d_model: int) -> int:
        return self.settings.k * d_model

    def expand(self, embedded: Array) -> tuple[Array, ...]:
        blocks = jnp.split(embedded, self.settings.k, axis=-1)
        return tuple(pt.constrain_tokens(block) for block in blocks)

    def output(self, state: tuple[Array, ...]) -> Array:
        if self.settings.readout == "sum":
            return sum_blocks(state)
        return pt.constrain_tokens(jnp.concatenate(state, axis=-1))


@dataclasses.dataclass(frozen=True)
class RecycledAltUpAdapter(BlocksAdapter):
    """Recycled-AltUp: the d-wide embedding copied K times; output is the blocks' sum."""

    def expand(self, embedded: Array) -> tuple[Array, ...]:
        return (embedded,) * self.settings.k

    def output(self, state: tuple[Array, ...]) -> Array:
        return sum_blocks(state)


@dataclasses.dataclass(frozen=True)
class SequenceAltUpAdapter(StackAdapter):
    """Sequence-AltUp: every layer a `SequenceAltUpLayer` with stride s (decodes uncached)."""

    settings: AltUpSettings

    def supports_decode_cache(self) -> bool:
        return False

    def wrap_layer(
        self, make_layer: Callable[..., nn.Module], index: int, name: str, *, remat: str = "none"
    ):
        return pt.remat(SequenceAltUpLayer, remat)(
            layer=make_layer(parent=None),
            index=index,
            stride=self.settings.sequence_stride,
            name=name,
        )


def _dense(settings: AltUpSettings) -> StackAdapter:
    del settings
    return StackAdapter()


# The values of `model.altup.variant`, each with its adapter.
VARIANTS: dict[str, Callable[[AltUpSettings], StackAdapter]] = {
    "none": _dense,
    "altup": AltUpAdapter,
    "recycled": RecycledAltUpAdapter,
    "sequence": SequenceAltUpAdapter,
}
