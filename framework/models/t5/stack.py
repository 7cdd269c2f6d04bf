"""T5's encoder and decoder stacks, and `StackAdapter`: the hook through which projects
change how token states flow through the layers (e.g. AltUp's K blocks).

Token states are constrained to (batch, length, embed) at every layer boundary, and
each layer (or the adapter's wrapper around it) is rematerialised by `T5Dims.remat`
(`framework.models.partitioning`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from framework.models import partitioning as pt
from framework.models.t5.layers import (
    GatedGeluMlp,
    LayerContext,
    MultiHeadAttention,
    RelativePositionBias,
    RMSNorm,
    T5Dims,
    _kernel_init,
    attention_mask,
    mask_to_bias,
)

Array = jax.Array


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
        x = x + drop(GatedGeluMlp(self.dims, name="mlp")(y, train=train))
        return pt.constrain_tokens(x)


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
        x = x + drop(GatedGeluMlp(self.dims, name="mlp")(y, train=train))
        return pt.constrain_tokens(x)


@dataclasses.dataclass(frozen=True)
class StackAdapter:
    """How token states flow through a T5 stack; the default is plain T5.

    T5 calls only these methods, so a project can widen the state (e.g. K blocks of
    width d) and wrap every layer without T5 knowing. `wrap_layer` is called inside the
    stack's compact method; `make_layer(**kwargs)` builds the d-wide layer (pass
    `parent=None` to hand it to a wrapper module, which then adopts it), and
    `make_layer(remat=policy, ...)` a rematerialised one. `wrap_layer` applies the
    stack's `remat` policy once, to the outermost module it returns (`pt.remat` on
    that module's class), so that a wrapper's own steps are recomputed too.
    """

    def embedding_features(self, d_model: int) -> int:
        """Width of the shared input embedding table."""
        return d_model

    def expand(self, embedded: Array) -> Any:
        """Embedded tokens [B, L, embedding_features] -> the stack's state."""
        return embedded

    def wrap_layer(
        self, make_layer: Callable[..., nn.Module], index: int, name: str, *, remat: str = "none"
    ) -> nn.Module:
        """The module applied as layer `index` of a stack: state, context -> state,
        rematerialised by the policy `remat`."""
        return make_layer(name=name, remat=remat)

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
    """The adapter's state for `x`, through `num_layers` wrapped layers (each
    rematerialised by `dims.remat`)."""

    def make_layer(remat: str = "none", **kwargs: Any) -> nn.Module:
        return pt.remat(layer_class, remat)(dims, **kwargs)

    state = adapter.expand(pt.constrain_tokens(x))
    for i in range(num_layers):
        layer = adapter.wrap_layer(make_layer, i, f"layers_{i}", remat=dims.remat)
        state = layer(state, context, train=train)
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
        x = RMSNorm(name="final_norm")(pt.constrain_tokens(self.adapter.memory(state)))
        x = nn.Dropout(d.dropout_rate)(x, deterministic=not train)
        return pt.constrain_tokens(x)


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
        x = RMSNorm(name="final_norm")(pt.constrain_tokens(self.adapter.output(state)))
        x = nn.Dropout(d.dropout_rate)(x, deterministic=not train)
        # Inputs in the compute dtype, float32 logits straight from the matmul's
        # accumulator: no rounding of the loss's inputs to bfloat16.
        logits = nn.Dense(
            d.vocab_size,
            use_bias=False,
            kernel_init=pt.param_init(_kernel_init(), pt.EMBED, pt.VOCAB),
            dtype=d.activation_dtype,
            param_dtype=jnp.float32,
            dot_general=functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32),
            name="logits_dense",
        )(x)
        return pt.constrain(logits.astype(jnp.float32), pt.BATCH, pt.LENGTH, pt.VOCAB)


class T5Module(nn.Module):
    """Shared input embedding, encoder and decoder; returns logits [B, Lt, vocab].

    The embedding table is (vocab, embed), its width the adapter's
    `embedding_features` (K * d_model for AltUp: the widened axis is still `embed`).
    """

    dims: T5Dims
    adapter: StackAdapter = StackAdapter()

    def setup(self):
        self.token_embedding = nn.Embed(
            self.dims.vocab_size,
            self.adapter.embedding_features(self.dims.d_model),
            embedding_init=pt.param_init(nn.initializers.normal(stddev=1.0), pt.VOCAB, pt.EMBED),
            dtype=self.dims.activation_dtype,
            param_dtype=jnp.float32,
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
