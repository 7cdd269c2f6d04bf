"""T5.1.1 encoder-decoder with a per-layer hook (`StackAdapter`) for projects.

T5.1.1 as in the 1.1 checkpoints and T5X: pre-norm RMSNorm without bias or mean
subtraction, relative position bias (one table per stack, shared by its layers;
bidirectional buckets in the encoder, causal in the decoder), no 1/sqrt(d_kv) scaling of
attention logits (it is folded into the query initialiser), gated-GELU feed-forward, no
biases anywhere, one input embedding shared by both stacks and an untied output
projection, dropout off by default (pre-training).

Projects change how token states flow through the stacks (e.g. AltUp's K blocks) by
passing a `StackAdapter`; every layer is a module `layer(x, context, train=...) -> x`
on d-wide states, so a wrapper can call it on whatever it chooses.

Batch fields: `encoder_input_tokens` [B, Li], `decoder_input_tokens` [B, Lt] (targets
shifted right, 0 = BOS), `decoder_target_tokens` [B, Lt]; token 0 is padding.
Packed rows add `encoder_segment_ids` / `decoder_segment_ids` (1, 2, ... per example,
0 on padding): attention then stays within an example. Relative positions come from
position differences inside a row, which equal those inside each packed example, so
`*_positions` are not needed (as in T5X).

Decoding (`framework.models.decoding`): `T5Module.decode_step` runs the decoder on one
new token per call with a key/value cache in flax's `cache` collection. Each decoder
self-attention keeps `cached_key` / `cached_value` [B, max_len, H, d_kv] and a
`cache_index`; each cross-attention keeps its projected encoder memory
(`memory_key` / `memory_value` [B, Li, H, d_kv], computed once); the decoder keeps the
`position` of the next token, which picks the causal relative-position bias row. A
`decode_step` applied with `mutable=["cache"]` and no cache creates the cache (zeros of
the shapes above, the memory projected) and writes its token at position 0;
`decoding.init_cache` uses that call and resets all but the memory, so that the decode
loop starts at position 0. The train/eval path never touches the cache.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Literal

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from framework import config_fields, errors, registry
from framework.models import base

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
    """T5's layer norm: x / rms(x) * scale (no mean subtraction, no bias)."""

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
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
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
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

        project = functools.partial(
            nn.DenseGeneral, features=(d.num_heads, d.d_kv), use_bias=False, dtype=dtype
        )
        q = project(kernel_init=query_init, name="query")(inputs_q)
        if cache == "memory" and self.has_variable("cache", "memory_key"):
            k = self.get_variable("cache", "memory_key")
            v = self.get_variable("cache", "memory_value")
        else:
            k = project(kernel_init=kernel_init, name="key")(inputs_kv)
            v = project(kernel_init=kernel_init, name="value")(inputs_kv)
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
            kernel_init=kernel_init,
            dtype=dtype,
            name="out",
        )(out)


class GatedGeluMlp(nn.Module):
    """(gelu(x W0) * x W1) W_out, no biases (T5.1.1's feed-forward)."""

    dims: T5Dims

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        d = self.dims
        dense = functools.partial(
            nn.Dense, use_bias=False, kernel_init=_kernel_init(), dtype=d.activation_dtype
        )
        h = nn.gelu(dense(d.d_ff, name="wi_0")(x), approximate=True) * dense(d.d_ff, name="wi_1")(x)
        h = nn.Dropout(d.dropout_rate)(h, deterministic=not train)
        return dense(d.d_model, name="wo")(h)


class EncoderLayer(nn.Module):
    """x + SelfAttention(norm(x)); x + MLP(norm(x)), on d-wide states."""

    dims: T5Dims

    @nn.compact
    def __call__(self, x: Array, context: LayerContext, *, train: bool) -> Array:
        drop = nn.Dropout(self.dims.dropout_rate, deterministic=not train)
        y = RMSNorm(name="pre_attention_norm")(x)
        y = MultiHeadAttention(self.dims, name="attention")(y, y, context.self_bias, train=train)
        x = x + drop(y)
        y = RMSNorm(name="pre_mlp_norm")(x)
        return x + drop(GatedGeluMlp(self.dims, name="mlp")(y, train=train))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention to the memory, MLP; pre-norm residuals.

    With `context.decode_length` set, both attentions use the decoding cache.
    """

    dims: T5Dims

    @nn.compact
    def __call__(self, x: Array, context: LayerContext, *, train: bool) -> Array:
        drop = nn.Dropout(self.dims.dropout_rate, deterministic=not train)
        decoding = context.decode_length is not None
        y = RMSNorm(name="pre_self_attention_norm")(x)
        y = MultiHeadAttention(self.dims, name="self_attention")(
            y,
            y,
            context.self_bias,
            train=train,
            cache="self" if decoding else "none",
            decode_length=context.decode_length,
        )
        x = x + drop(y)
        y = RMSNorm(name="pre_cross_attention_norm")(x)
        y = MultiHeadAttention(self.dims, name="encoder_decoder_attention")(
            y,
            context.memory,
            context.memory_bias,
            train=train,
            cache="memory" if decoding else "none",
        )
        x = x + drop(y)
        y = RMSNorm(name="pre_mlp_norm")(x)
        return x + drop(GatedGeluMlp(self.dims, name="mlp")(y, train=train))


@dataclasses.dataclass(frozen=True)
class StackAdapter:
    """How token states flow through a T5 stack; the default is plain T5.

    T5 calls only these methods, so a project can widen the state (e.g. K blocks of
    width d) and wrap every layer without T5 knowing. `wrap_layer` is called inside the
    stack's compact method; `make_layer(**kwargs)` builds the d-wide layer (pass
    `parent=None` to hand it to a wrapper module, which then adopts it).
    """

    def embedding_features(self, d_model: int) -> int:
        """Width of the shared input embedding table."""
        return d_model

    def expand(self, embedded: Array) -> Any:
        """Embedded tokens [B, L, embedding_features] -> the stack's state."""
        return embedded

    def wrap_layer(self, make_layer: Callable[..., nn.Module], index: int, name: str) -> nn.Module:
        """The module applied as layer `index` of a stack: state, context -> state."""
        return make_layer(name=name)

    def memory(self, state: Any) -> Array:
        """Encoder state -> [B, L, d] before the encoder's final norm."""
        return state

    def output(self, state: Any) -> Array:
        """Decoder state -> [B, L, width] before the final norm and output projection."""
        return state

    def supports_decode_cache(self) -> bool:
        """Whether the wrapped layers can decode one token at a time with the cache.

        False for adapters that mix positions of the sequence in a layer; decoding then
        recomputes the whole prefix every step.
        """
        return True


def _run_layers(
    layer_class: type[nn.Module],
    dims: T5Dims,
    adapter: StackAdapter,
    num_layers: int,
    x: Array,
    context: LayerContext,
    train: bool,
) -> Any:
    """The adapter's state for `x`, through `num_layers` wrapped layers."""
    make_layer = functools.partial(layer_class, dims)
    state = adapter.expand(x)
    for i in range(num_layers):
        state = adapter.wrap_layer(make_layer, i, f"layers_{i}")(state, context, train=train)
    return state


class Encoder(nn.Module):
    """Embedded inputs -> d-wide memory (after the final RMSNorm)."""

    dims: T5Dims
    adapter: StackAdapter = StackAdapter()

    @nn.compact
    def __call__(
        self, embedded: Array, tokens: Array, segment_ids: Array | None = None, *, train: bool
    ) -> Array:
        d = self.dims
        length = tokens.shape[1]
        x = nn.Dropout(d.dropout_rate)(embedded, deterministic=not train)
        position_bias = RelativePositionBias(d, bidirectional=True, name="relpos_bias")(
            length, length
        )
        mask = attention_mask(tokens, segment_ids, segment_ids)
        context = LayerContext(
            self_bias=position_bias + mask_to_bias(mask), segment_ids=segment_ids
        )
        state = _run_layers(EncoderLayer, d, self.adapter, d.num_encoder_layers, x, context, train)
        x = RMSNorm(name="final_norm")(self.adapter.memory(state))
        return nn.Dropout(d.dropout_rate)(x, deterministic=not train)


@flax.struct.dataclass
class EncodedInputs:
    """The encoder's output with what cross-attention needs to mask it."""

    states: Array  # [B, Li, d] after the encoder's final norm
    tokens: Array  # [B, Li] encoder input tokens (0 = padding)
    segment_ids: Array | None = None  # [B, Li] packed-example ids, or None


class Decoder(nn.Module):
    """Embedded decoder inputs and the encoded inputs -> float32 logits [B, Lt, vocab].

    With `decode_length`, one token [B, 1] at the cached `position` (0, 1, ... over
    calls): causal self-attention over the cache of `decode_length` positions.
    """

    dims: T5Dims
    adapter: StackAdapter = StackAdapter()

    @nn.compact
    def __call__(
        self,
        embedded: Array,
        target_tokens: Array,
        encoded: EncodedInputs,
        segment_ids: Array | None = None,
        *,
        train: bool,
        decode_length: int | None = None,
    ) -> Array:
        d = self.dims
        length = target_tokens.shape[1]
        x = nn.Dropout(d.dropout_rate)(embedded, deterministic=not train)
        if decode_length is None:
            position_bias = RelativePositionBias(d, bidirectional=False, name="relpos_bias")(
                length, length
            )
            causal = np.tril(np.ones((length, length), dtype=bool))[None, None]
            self_mask = causal & attention_mask(target_tokens, segment_ids, segment_ids)
            memory_mask = attention_mask(encoded.tokens, segment_ids, encoded.segment_ids)
            context = LayerContext(
                self_bias=position_bias + mask_to_bias(self_mask),
                memory=encoded.states,
                memory_bias=mask_to_bias(memory_mask),
                segment_ids=segment_ids,
            )
        else:
            position = self.variable("cache", "position", lambda: jnp.zeros((), jnp.int32))
            i = position.value
            position.value = i + 1
            position_bias = RelativePositionBias(d, bidirectional=False, name="relpos_bias")(
                length, decode_length, query_position=i
            )
            written = (jnp.arange(decode_length) <= i)[None, None, None, :]
            memory_mask = attention_mask(encoded.tokens, None, None)
            context = LayerContext(
                self_bias=position_bias + mask_to_bias(written),
                memory=encoded.states,
                memory_bias=mask_to_bias(memory_mask),
                decode_length=decode_length,
            )
        state = _run_layers(DecoderLayer, d, self.adapter, d.num_decoder_layers, x, context, train)
        x = RMSNorm(name="final_norm")(self.adapter.output(state))
        x = nn.Dropout(d.dropout_rate)(x, deterministic=not train)
        logits = nn.Dense(
            d.vocab_size,
            use_bias=False,
            kernel_init=_kernel_init(),
            dtype=d.activation_dtype,
            name="logits_dense",
        )(x)
        return logits.astype(jnp.float32)


class T5Module(nn.Module):
    """Shared input embedding, encoder and decoder; returns logits [B, Lt, vocab]."""

    dims: T5Dims
    adapter: StackAdapter = StackAdapter()

    def setup(self):
        self.token_embedding = nn.Embed(
            self.dims.vocab_size,
            self.adapter.embedding_features(self.dims.d_model),
            embedding_init=nn.initializers.normal(stddev=1.0),
            dtype=self.dims.activation_dtype,
        )
        self.encoder = Encoder(self.dims, self.adapter)
        self.decoder = Decoder(self.dims, self.adapter)

    def encode(
        self,
        encoder_input_tokens: Array,
        encoder_segment_ids: Array | None = None,
        *,
        train: bool,
    ) -> EncodedInputs:
        states = self.encoder(
            self.token_embedding(encoder_input_tokens),
            encoder_input_tokens,
            encoder_segment_ids,
            train=train,
        )
        return EncodedInputs(states, encoder_input_tokens, encoder_segment_ids)

    def decode(
        self,
        encoded: EncodedInputs,
        decoder_input_tokens: Array,
        decoder_target_tokens: Array,
        decoder_segment_ids: Array | None = None,
        *,
        train: bool,
    ) -> Array:
        return self.decoder(
            self.token_embedding(decoder_input_tokens),
            decoder_target_tokens,
            encoded,
            decoder_segment_ids,
            train=train,
        )

    def decode_step(
        self, encoded: EncodedInputs, decoder_input_tokens: Array, *, decode_length: int
    ) -> Array:
        """Logits [B, 1, vocab] of the next position from its input token [B, 1].

        Uses and updates the `cache` collection (apply with `mutable=["cache"]`); the
        first call, without a cache, creates it for `decode_length` positions and runs
        position 0. Unpacked rows only; evaluation mode (no dropout).
        """
        return self.decoder(
            self.token_embedding(decoder_input_tokens),
            decoder_input_tokens,
            encoded,
            train=False,
            decode_length=decode_length,
        )

    def __call__(
        self,
        encoder_input_tokens: Array,
        decoder_input_tokens: Array,
        decoder_target_tokens: Array,
        encoder_segment_ids: Array | None = None,
        decoder_segment_ids: Array | None = None,
        *,
        train: bool,
    ) -> Array:
        encoded = self.encode(encoder_input_tokens, encoder_segment_ids, train=train)
        return self.decode(
            encoded, decoder_input_tokens, decoder_target_tokens, decoder_segment_ids, train=train
        )


def _sequences_all_correct(
    correct: Array, weights: Array, segment_ids: Array | None
) -> tuple[Array, Array]:
    """Per row: (sequences with every target token right, sequences present)."""
    if segment_ids is None:
        present = (weights.sum(-1) > 0).astype(jnp.float32)
        all_right = jnp.all((correct > 0) | (weights == 0), axis=-1).astype(jnp.float32)
        return all_right * present, present
    # Packed: one sequence per segment id 1..L.
    segments = jax.nn.one_hot(segment_ids, segment_ids.shape[-1] + 1)[..., 1:] * weights[..., None]
    present = (segments.sum(1) > 0).astype(jnp.float32)
    wrong = jnp.einsum("bl,bls->bs", weights * (1.0 - correct), segments) > 0
    return (present * (1.0 - wrong)).sum(-1), present.sum(-1)


def seq2seq_metrics(
    logits: Array,
    targets: Array,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    segment_ids: Array | None = None,
) -> base.MetricPairs:
    """Teacher-forced cross-entropy and accuracies as per-row (sum, count) pairs.

    Target token 0 is padding and counts nowhere, so the trainer's ratio of sums is a
    mean over real target tokens; `sequence_accuracy` counts whole target sequences
    (each packed example of a row separately when `segment_ids` are given).
    `loss` = cross-entropy + z_loss * logsumexp^2 per token (T5X's auxiliary z-loss
    keeps the softmax normaliser near 1). With label smoothing the entropy of the
    smoothed targets is subtracted, so a perfect model scores 0 (as in T5X).
    """
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    weights = (targets > 0).astype(jnp.float32)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    log_probs = logits - log_z[..., None]
    if label_smoothing:
        confidence = 1.0 - label_smoothing
        low = label_smoothing / (vocab - 1)
        soft = jax.nn.one_hot(targets, vocab) * (confidence - low) + low
        min_entropy = -(confidence * math.log(confidence) + (vocab - 1) * low * math.log(low))
        cross_entropy = -(soft * log_probs).sum(-1) - min_entropy
    else:
        cross_entropy = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    z_term = z_loss * log_z**2
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    num_tokens = weights.sum(-1)
    return {
        "loss": (((cross_entropy + z_term) * weights).sum(-1), num_tokens),
        "cross_entropy": ((cross_entropy * weights).sum(-1), num_tokens),
        "z_loss": ((z_term * weights).sum(-1), num_tokens),
        "accuracy": ((correct * weights).sum(-1), num_tokens),
        "sequence_accuracy": _sequences_all_correct(correct, weights, segment_ids),
    }


@registry.MODELS.register("t5")
class T5Model(base.BaseModel):
    """T5.1.1 trained with teacher forcing on (encoder inputs, decoder targets).

    The vocabulary size is `model.vocab_size` if set, else the dataset's
    `meta['vocab_size']`. Subclasses change the stacks by overriding `adapter()`.
    """

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        config.size = "small"  # a key of SIZES; the fields below override it
        placeholder = ml_collections.config_dict.placeholder
        config.vocab_size = placeholder(int)
        config.d_model = placeholder(int)
        config.d_ff = placeholder(int)
        config.num_heads = placeholder(int)
        config.d_kv = placeholder(int)
        config.num_layers = placeholder(int)  # both stacks
        config.num_encoder_layers = placeholder(int)
        config.num_decoder_layers = placeholder(int)
        config.dropout_rate = 0.0
        config.relative_attention_num_buckets = 32
        config.relative_attention_max_distance = 128
        config.dtype = "float32"  # activations: float32 | bfloat16
        config.z_loss = 1e-4
        config.label_smoothing = 0.0
        return config

    DTYPES = ("float32", "bfloat16")
    DIM_FIELDS = (
        "vocab_size",
        "d_model",
        "d_ff",
        "num_heads",
        "d_kv",
        "num_layers",
        "num_encoder_layers",
        "num_decoder_layers",
        "relative_attention_num_buckets",
        "relative_attention_max_distance",
    )

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        super().check_config(config)
        if config.size not in SIZES:
            raise errors.ConfigError(
                f"config.model.size: unknown size {config.size!r}; known: {', '.join(SIZES)}"
            )
        for key in cls.DIM_FIELDS:
            if config.get(key) is not None:
                config_fields.check_positive(f"config.model.{key}", config[key])
        config_fields.check_one_of("config.model.dtype", config.dtype, cls.DTYPES)
        config_fields.check_rate("config.model.dropout_rate", config.dropout_rate)
        config_fields.check_rate("config.model.label_smoothing", config.label_smoothing)
        config_fields.check_non_negative("config.model.z_loss", config.z_loss)

    @property
    def vocab_size(self) -> int:
        if self.config.get("vocab_size") is not None:
            return int(self.config.vocab_size)
        if "vocab_size" not in self.dataset_meta:
            raise errors.ConfigError(
                "model.vocab_size is not set and the dataset gives no meta['vocab_size']"
            )
        return int(self.dataset_meta["vocab_size"])

    def dims(self) -> T5Dims:
        return dims_from_config(self.config, self.vocab_size)

    def adapter(self) -> StackAdapter:
        return StackAdapter()

    def build_module(self) -> nn.Module:
        return T5Module(self.dims(), self.adapter())

    def module_inputs(self, batch: base.Batch) -> dict[str, Array]:
        names = ["encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens"]
        if "encoder_segment_ids" in batch or "decoder_segment_ids" in batch:
            names += ["encoder_segment_ids", "decoder_segment_ids"]
        return {name: batch[name] for name in names}

    def metrics(self, outputs: Array, batch: base.Batch) -> base.MetricPairs:
        return seq2seq_metrics(
            outputs,
            batch["decoder_target_tokens"],
            z_loss=float(self.config.z_loss),
            label_smoothing=float(self.config.label_smoothing),
            segment_ids=batch.get("decoder_segment_ids"),
        )
