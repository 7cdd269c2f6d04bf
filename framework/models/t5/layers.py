"""T5.1.1 building blocks: sizes, RMSNorm, relative position bias, attention (with the
decoding key/value cache), the gated-GELU MLP and the per-layer context.

Every parameter is float32 and carries logical axis names
(`framework.models.partitioning`); the computation runs in `T5Dims.dtype`, with float32
norm statistics, attention logits and softmax.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Literal

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from framework import errors
from framework.models import partitioning as pt

Array = jax.Array

# Additive attention bias for masked keys: large but finite, so rows with every key
# masked (padding queries) stay finite.
MASK_BIAS = -1e10

# (d_model, d_ff, num_heads, d_kv, layers per stack). small..xxl are T5.1.1's sizes;
# tiny and mini are ours, for CPU runs and tests.
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (64, 128, 4, 16, 2),
    "mini": (128, 256, 4, 32, 4),
    "small": (512, 1024, 6, 64, 8),
    "base": (768, 2048, 12, 64, 12),
    "large": (1024, 2816, 16, 64, 24),
    "xl": (2048, 5120, 32, 64, 24),
    "xxl": (4096, 10240, 64, 64, 24),
}


@dataclasses.dataclass(frozen=True)
class T5Dims:
    """Every shape and rate of a T5 model (hashable, so modules can hold it)."""

    vocab_size: int
    d_model: int
    d_ff: int
    num_heads: int
    d_kv: int
    num_encoder_layers: int
    num_decoder_layers: int
    dropout_rate: float = 0.0
    num_buckets: int = 32
    max_distance: int = 128
    dtype: str = "float32"  # activations; parameters are always float32
    remat: str = "none"  # a `partitioning.REMAT_POLICIES` name, applied to every layer

    @property
    def activation_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)


def dims_from_config(config: ml_collections.ConfigDict, vocab_size: int) -> T5Dims:
    """`config.size` picks a row of SIZES; any field set explicitly overrides it."""
    if config.size not in SIZES:
        raise errors.ConfigError(f"unknown model.size {config.size!r}; known: {', '.join(SIZES)}")
    d_model, d_ff, num_heads, d_kv, num_layers = SIZES[config.size]

    def pick(name: str, default: int) -> int:
        value = config.get(name)
        return default if value is None else int(value)

    num_layers = pick("num_layers", num_layers)
    return T5Dims(
        vocab_size=vocab_size,
        d_model=pick("d_model", d_model),
        d_ff=pick("d_ff", d_ff),
        num_heads=pick("num_heads", num_heads),
        d_kv=pick("d_kv", d_kv),
        num_encoder_layers=pick("num_encoder_layers", num_layers),
        num_decoder_layers=pick("num_decoder_layers", num_layers),
        dropout_rate=float(config.dropout_rate),
        num_buckets=int(config.relative_attention_num_buckets),
        max_distance=int(config.relative_attention_max_distance),
        dtype=str(config.dtype),
        remat=str(config.get("remat", "none")),
    )


def relative_position_bucket(
    relative_position: np.ndarray, bidirectional: bool, num_buckets: int, max_distance: int
) -> np.ndarray:
    """T5's bucket of each `key_position - query_position` (NumPy, static shapes).

    Small distances get a bucket each (half the buckets), larger ones share
    logarithmically wider buckets up to `max_distance`, beyond which all share the
    last. Bidirectional: keys after the query use the upper half of the buckets.
    Causal: keys after the query all fall in bucket 0 (they are masked anyway).
    """
    n = -np.asarray(relative_position)
    bucket = np.zeros_like(n, dtype=np.int32)
    if bidirectional:
        num_buckets //= 2
        bucket += (n < 0).astype(np.int32) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    scaled = np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps) / np.log(
        max_distance / max_exact
    )
    large = max_exact + (scaled * (num_buckets - max_exact)).astype(np.int32)
    large = np.minimum(large, num_buckets - 1)
    return bucket + np.where(is_small, n, large).astype(np.int32)


def _kernel_init(distribution: str = "truncated_normal") -> Callable:
    """T5X's fan-in variance scaling (attention uses `normal`, the rest truncated)."""
    return nn.initializers.variance_scaling(1.0, "fan_in", distribution)


class RMSNorm(nn.Module):
    """T5's layer norm: x / rms(x) * scale (no mean subtraction, no bias); float32
    statistics and scale, output in the input's dtype."""

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: Array) -> Array:
        init = pt.param_init(nn.initializers.ones, pt.EMBED)
        scale = self.param("scale", init, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32**2, axis=-1, keepdims=True) + self.epsilon)
        return (y * scale).astype(x.dtype)


class RelativePositionBias(nn.Module):
    """A learned [num_heads, num_buckets] table giving bias [1, H, Lq, Lk].

    With `query_position` (a traced scalar, for one-token decoding), the bias is the
    row [1, H, 1, Lk] of that query position over key positions 0..Lk-1: the same
    buckets, hence the same values, as row `query_position` of the full table.
    """

    dims: T5Dims
    bidirectional: bool

    @nn.compact
    def __call__(
        self, query_length: int, key_length: int, query_position: Array | None = None
    ) -> Array:
        table = self.param(
            "rel_embedding",
            pt.param_init(
                nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), pt.HEADS, pt.BUCKETS
            ),
            (self.dims.num_heads, self.dims.num_buckets),
            jnp.float32,
        )
        if query_position is not None:
            if query_length != 1:
                raise ValueError(f"query_position needs query_length 1, got {query_length}")
            query_length = key_length  # the full table, of which one row is taken
        relative = np.arange(key_length)[None, :] - np.arange(query_length)[:, None]
        buckets = relative_position_bucket(
            relative, self.bidirectional, self.dims.num_buckets, self.dims.max_distance
        )
        if query_position is not None:
            row = jnp.take(jnp.asarray(buckets), query_position, axis=0)
            return table[:, row][None, :, None, :]
        return table[:, buckets][None]


def mask_to_bias(mask: Array) -> Array:
    """Boolean attention mask (True = attend) -> additive float32 bias."""
    return jnp.where(mask, 0.0, MASK_BIAS).astype(jnp.float32)


@flax.struct.dataclass
class LayerContext:
    """What a layer needs besides its states, indexed by query position.

    self_bias: [B or 1, H or 1, Lq, Lq] additive self-attention bias (mask + positions).
    memory / memory_bias: the encoder output [B, Lm, d] and the cross-attention bias
    [B, 1, Lq or 1, Lm] (decoder layers only).
    segment_ids: [B, Lq] packed-example id of each position, or None (unpacked), for
    wrappers that mix positions (they must not mix examples).
    decode_length: None (a whole sequence), or the cache length of one-token cached
    decoding (`T5Module.decode_step`): Lq is 1 and self_bias covers the cache's keys.
    """

    self_bias: Array
    memory: Array | None = None
    memory_bias: Array | None = None
    segment_ids: Array | None = None
    decode_length: int | None = flax.struct.field(pytree_node=False, default=None)

    def take(self, positions: np.ndarray) -> "LayerContext":
        """The context of a layer that runs only on `positions` of the sequence.

        Self-attention is then among those positions (queries and keys), with their
        true relative positions; cross-attention keeps the whole memory.
        """
        positions = np.asarray(positions)

        def rows(bias: Array) -> Array:
            return bias if bias.shape[-2] == 1 else jnp.take(bias, positions, axis=-2)

        self_bias = jnp.take(rows(self.self_bias), positions, axis=-1)
        memory_bias = None if self.memory_bias is None else rows(self.memory_bias)
        segment_ids = self.segment_ids
        if segment_ids is not None:
            segment_ids = jnp.take(segment_ids, positions, axis=1)
        return LayerContext(self_bias, self.memory, memory_bias, segment_ids, self.decode_length)


def attention_mask(
    key_tokens: Array, query_segments: Array | None, key_segments: Array | None
) -> Array:
    """[B, 1, Lq, Lk] True where the key is not padding and both are in one packed example."""
    mask = (key_tokens > 0)[:, None, None, :]
    if query_segments is None or key_segments is None:
        return mask
    return mask & (query_segments[:, None, :, None] == key_segments[:, None, None, :])


# What `MultiHeadAttention` caches in one-token decoding: nothing (whole sequences), the
# growing self-attention keys/values, or the projected encoder memory.
CacheMode = Literal["none", "self", "memory"]


class MultiHeadAttention(nn.Module):
    """T5 attention: no biases, logits not scaled (the query init carries 1/sqrt(d_kv)).

    `cache='self'` (one query token): its key/value are written at `cache_index` of
    `cached_key` / `cached_value` [B, decode_length, H, d_kv] and the query attends to
    the whole cache (`bias` masks the positions not yet written). `cache='memory'`:
    the keys/values of `inputs_kv` are projected on the first call and kept as
    `memory_key` / `memory_value`. Both live in the `cache` collection.
    Logits and softmax are float32 whatever `dims.dtype` (`bias` is float32).
    """

    dims: T5Dims

    @nn.compact
    def __call__(
        self,
        inputs_q: Array,
        inputs_kv: Array,
        bias: Array,
        *,
        train: bool,
        cache: CacheMode = "none",
        decode_length: int | None = None,
    ) -> Array:
        d = self.dims
        dtype = d.activation_dtype
        kernel_init = _kernel_init("normal")

        def query_init(key, shape, dtype=jnp.float32):
            return kernel_init(key, shape, dtype) / math.sqrt(d.d_kv)

        def project(init: Callable, name: str, inputs: Array) -> Array:
            y = nn.DenseGeneral(
                features=(d.num_heads, d.d_kv),
                use_bias=False,
                dtype=dtype,
                param_dtype=jnp.float32,
                kernel_init=pt.param_init(init, pt.EMBED, pt.HEADS, pt.KV),
                name=name,
            )(inputs)
            return pt.constrain(y, pt.BATCH, pt.LENGTH, pt.HEADS, pt.KV)

        q = project(query_init, "query", inputs_q)
        if cache == "memory" and self.has_variable("cache", "memory_key"):
            k = self.get_variable("cache", "memory_key")
            v = self.get_variable("cache", "memory_value")
        else:
            k = project(kernel_init, "key", inputs_kv)
            v = project(kernel_init, "value", inputs_kv)
            if cache == "memory":  # the first decoding step: keep the projected memory
                self.put_variable("cache", "memory_key", k)
                self.put_variable("cache", "memory_value", v)
        if cache == "self":
            if inputs_q.shape[1] != 1 or decode_length is None:
                raise ValueError("cached self-attention takes one token and a decode_length")
            shape = (k.shape[0], decode_length) + k.shape[2:]
            cached_key = self.variable("cache", "cached_key", jnp.zeros, shape, k.dtype)
            cached_value = self.variable("cache", "cached_value", jnp.zeros, shape, v.dtype)
            index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
            i = index.value
            k = jax.lax.dynamic_update_slice(cached_key.value, k, (0, i, 0, 0))
            v = jax.lax.dynamic_update_slice(cached_value.value, v, (0, i, 0, 0))
            cached_key.value, cached_value.value, index.value = k, v, i + 1
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        weights = jax.nn.softmax(logits + bias, axis=-1).astype(dtype)
        weights = nn.Dropout(d.dropout_rate)(weights, deterministic=not train)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        return nn.DenseGeneral(
            d.d_model,
            axis=(-2, -1),
            use_bias=False,
            kernel_init=pt.param_init(kernel_init, pt.HEADS, pt.KV, pt.EMBED),
            dtype=dtype,
            param_dtype=jnp.float32,
            name="out",
        )(out)


class GatedGeluMlp(nn.Module):
    """(gelu(x W0) * x W1) W_out, no biases (T5.1.1's feed-forward)."""

    dims: T5Dims

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        d = self.dims
        dense = functools.partial(
            pt.dense, use_bias=False, kernel_init=_kernel_init(), dtype=d.activation_dtype
        )
        wi_0 = dense(d.d_ff, (pt.EMBED, pt.MLP), name="wi_0")
        wi_1 = dense(d.d_ff, (pt.EMBED, pt.MLP), name="wi_1")
        h = nn.gelu(wi_0(x), approximate=True) * wi_1(x)
        h = pt.constrain(h, pt.BATCH, pt.LENGTH, pt.MLP)
        h = nn.Dropout(d.dropout_rate)(h, deterministic=not train)
        return dense(d.d_model, (pt.MLP, pt.EMBED), name="wo")(h)
