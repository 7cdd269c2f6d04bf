"""AltUp's per-layer wrappers: predict, compute one d-wide slice, correct.

`AltUpLayer` runs one layer on K blocks of width d (the paper's AltUp);
`SequenceAltUpLayer` runs it on every s-th position (our Sequence-AltUp formulation).
Both wrap any module `layer(x, context, train=...) -> x` that maps d-wide states to
d-wide states with its residuals included, and are initialised so that every block or
position receives the layer's update.

Parameters are float32 with logical names: the predict / correct coefficients and the
Sequence-AltUp scalars index K blocks (or stride distances) along `altup`. Outputs are
constrained to (batch, length, embed), per block. Mixing runs in the blocks' dtype.

Decoding: AltUp's predict / compute / correct act on each position alone, so an
`AltUpLayer` decodes one token at a time and the key/value cache lives in the wrapped
layer (`layers_i/layer/self_attention/cached_key`, ...). A `SequenceAltUpLayer` mixes
positions of the sequence (strided computation, anchors), so it has no one-token step:
Sequence-AltUp decodes without a cache, recomputing the whole prefix every step.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from framework.models import partitioning as pt
from framework.models.t5.layers import LayerContext

Array = jax.Array

# The values of `model.altup.active`: the block layer `index` of K computes.
ACTIVE_MODES: dict[str, Callable[[int, int], int]] = {
    "alternating": lambda index, k: index % k,
    "same": lambda index, k: 0,
}


def active_block(index: int, k: int, mode: str) -> int:
    """The block layer `index` computes: index mod K (`alternating`) or 0 (`same`)."""
    return ACTIVE_MODES[mode](index, k)


def _identity_init(rng: Array, shape: tuple[int, int], dtype=jnp.float32) -> Array:
    del rng
    return jnp.eye(shape[0], shape[1], dtype=dtype)


# The values of `model.altup.compute_input`: which d-wide block the layer runs on.
COMPUTE_INPUTS = ("original", "predicted")


def mix_blocks(weights: Array, blocks: Sequence[Array]) -> tuple[Array, ...]:
    """out_i = sum_j weights_ij blocks_j over K blocks, as elementwise ops.

    For AltUp's small K a [K, K] contraction is K^2 scaled adds; written out on separate
    blocks, XLA fuses each output into one loop instead of running a matrix product
    whose contracted dimension is K over stacked [K, ...] arrays.
    """
    weights = weights.astype(blocks[0].dtype)
    k = len(blocks)
    out = []
    for i in range(k):
        mixed = weights[i, 0] * blocks[0]
        for j in range(1, k):
            mixed = mixed + weights[i, j] * blocks[j]
        out.append(mixed)
    return tuple(out)


class AltUpLayer(nn.Module):
    """One AltUp step on a state of K blocks, each [B, L, d] (a tuple, or stacked [K, ...]).

    predict: xhat_i = sum_j p_ij x_j; compute: y = layer(x_a) on the original active
    block (`compute_input='original'`, the paper's description: the layer and the
    predictor run side by side on the input blocks) or y = layer(xhat_a)
    (`'predicted'`, as Gemma 3n's descendant of AltUp does); correct:
    x'_i = xhat_i + g_i (y - xhat_a). p starts as the identity and g as ones, so at
    init the two forms agree and every block gets the layer's update y - x_a. Adds
    K^2 + K parameters (`predict`, `correct`). Returns a tuple of K blocks: kept
    apart rather than stacked, so that no step slices, stacks or (in the backward
    pass) pads a [K, B, L, d] array. Every step is per position, so cached one-token
    decoding (`context.decode_length`) works unchanged: the wrapped layer caches.
    """

    layer: nn.Module
    index: int
    k: int
    active: str  # one of ACTIVE_MODES
    compute_input: str = "original"  # one of COMPUTE_INPUTS

    @nn.compact
    def __call__(
        self, x: Sequence[Array], context: LayerContext, *, train: bool
    ) -> tuple[Array, ...]:
        if len(x) != self.k:
            raise ValueError(f"AltUp state has {len(x)} blocks, expected {self.k}")
        if self.compute_input not in COMPUTE_INPUTS:
            raise ValueError(f"compute_input must be one of {COMPUTE_INPUTS}")
        x = tuple(x)
        predict_init = pt.param_init(_identity_init, pt.SUBBLOCKS, pt.SUBBLOCKS)
        p = self.param("predict", predict_init, (self.k, self.k), jnp.float32)
        correct_init = pt.param_init(nn.initializers.ones, pt.SUBBLOCKS)
        g = self.param("correct", correct_init, (self.k,), jnp.float32)
        a = active_block(self.index, self.k, self.active)
        x_hat = mix_blocks(p, x)
        y = self.layer(x[a] if self.compute_input == "original" else x_hat[a], context, train=train)
        update = y - x_hat[a]
        g = g.astype(update.dtype)
        return tuple(pt.constrain_tokens(x_hat[i] + g[i] * update) for i in range(self.k))


def sequence_plan(length: int, index: int, stride: int) -> dict[str, np.ndarray]:
    """Static index arrays of Sequence-AltUp layer `index` over `length` positions.

    computed: the positions t with t mod s == index mod s (the layer runs on these).
    distance: t minus its anchor, the nearest computed position at or before t
        (0 at computed positions; positions before the first computed one get the
        distance to a virtual anchor at offset - s and have no anchor).
    anchor: the anchor's position (0 where there is none).
    slot: the anchor's index into `computed` (0 where there is none).
    has_anchor: whether an anchor exists.
    """
    offset = index % stride
    positions = np.arange(length)
    computed = np.arange(offset, length, stride)
    distance = (positions - offset) % stride
    anchor = positions - distance
    has_anchor = anchor >= 0
    slot = np.where(has_anchor, (anchor - offset) // stride, 0)
    return {
        "computed": computed,
        "distance": distance,
        "anchor": np.maximum(anchor, 0),
        "slot": slot,
        "has_anchor": has_anchor,
    }


class SequenceAltUpLayer(nn.Module):
    """Sequence-AltUp step on a d-wide state [B, L, d] with stride s (our formulation).

    Layer l runs only on positions t with t mod s == l mod s (self-attention among
    them, with their true relative positions), so every position is computed every s
    layers. A computed position takes the layer's output. Any other position t with
    anchor c (the nearest computed position <= t, at distance r = t - c) is predicted
    and corrected with scalars per distance r:
        x'_t = own_r * x_t + anchor_r * x_c + correct_r * (y_c - x_c),
    initialised own = 1, anchor = 0, correct = 1 (every position gets its anchor's
    update). Positions before the first computed one keep own_r * x_t, and so do
    positions whose anchor lies in another packed example (`context.segment_ids`).
    Nothing depends on a later position beyond what the layer itself does, so a causal
    layer stays causal. Adds 3 (s - 1) parameters. Which positions a layer computes
    depends on the whole sequence, so there is no cached one-token step: decoding
    recomputes the prefix (`framework.models.t5.decoding`, `use_cache=False`).
    """

    layer: nn.Module
    index: int
    stride: int

    @nn.compact
    def __call__(self, x: Array, context: LayerContext, *, train: bool) -> Array:
        if context.decode_length is not None:
            raise ValueError(
                "Sequence-AltUp has no cached one-token step; decode with use_cache=False"
            )
        shape = (self.stride - 1,)  # one scalar per distance r = 1 .. s - 1

        def distance_param(name: str, init: Callable) -> Array:
            return self.param(name, pt.param_init(init, pt.SUBBLOCKS), shape, jnp.float32)

        own = distance_param("own", nn.initializers.ones)
        anchor_w = distance_param("anchor", nn.initializers.zeros)
        correct = distance_param("correct", nn.initializers.ones)
        plan = sequence_plan(x.shape[1], self.index, self.stride)
        computed = plan["computed"]
        x_c = jnp.take(x, computed, axis=1)
        y_c = self.layer(x_c, context.take(computed), train=train)
        if self.stride == 1:
            return pt.constrain_tokens(y_c)
        which = np.maximum(plan["distance"] - 1, 0)

        def per_position(scalars: Array) -> Array:
            return scalars.astype(x.dtype)[which][None, :, None]

        if computed.size == 0:  # a sequence shorter than this layer's offset
            return pt.constrain_tokens(per_position(own) * x)
        slot = plan["slot"]
        x_anchor = jnp.take(x_c, slot, axis=1)
        y_anchor = jnp.take(y_c, slot, axis=1)
        delta_anchor = y_anchor - x_anchor
        has_anchor = jnp.asarray(plan["has_anchor"], x.dtype)[None, :, None]
        segments = context.segment_ids
        if segments is not None:
            same = segments == jnp.take(segments, plan["anchor"], axis=1)
            has_anchor = has_anchor * same[..., None].astype(x.dtype)
        predicted = (
            per_position(own) * x
            + per_position(anchor_w) * has_anchor * x_anchor
            + per_position(correct) * has_anchor * delta_anchor
        )
        is_computed = (plan["distance"] == 0)[None, :, None]
        return pt.constrain_tokens(jnp.where(is_computed, y_anchor, predicted))
