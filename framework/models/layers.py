"""Shared Transformer layers: attention with key padding masks, MLP, encoder blocks.

Every parameter carries logical axis names and every layer computes in its `dtype`
with float32 parameters, norms and softmax (`framework.models.partitioning`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from framework.models import partitioning as pt

Array = jax.Array


def key_padding_mask(valid: Array | None) -> Array | None:
    """[B, L] validity of keys -> [B, 1, 1, L] attention mask (None stays None)."""
    if valid is None:
        return None
    return valid[:, None, None, :].astype(bool)


class MlpBlock(nn.Module):
    """Dense -> GELU -> dropout -> Dense -> dropout."""

    mlp_dim: int
    out_dim: int | None = None
    dropout_rate: float = 0.0
    activation: Callable[[Array], Array] = nn.gelu
    kernel_init: Callable = nn.initializers.xavier_uniform()
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        out_dim = self.out_dim or x.shape[-1]
        bias_init = nn.initializers.normal(1e-6)
        x = pt.dense(
            self.mlp_dim,
            (pt.EMBED, pt.MLP),
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            bias_init=bias_init,
            name="fc1",
        )(x)
        x = pt.constrain(self.activation(x), pt.BATCH, pt.LENGTH, pt.MLP)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = pt.dense(
            out_dim,
            (pt.MLP, pt.EMBED),
            dtype=self.dtype,
            kernel_init=self.kernel_init,
            bias_init=bias_init,
            name="fc2",
        )(x)
        return nn.Dropout(self.dropout_rate)(x, deterministic=not train)


def constrained_attention(query: Array, key: Array, value: Array, *args, **kwargs) -> Array:
    """`nn.dot_product_attention` with its per-head inputs and output constrained to
    (batch, length, heads, kv): split over the batch (and heads), never over the width,
    so GSPMD gathers an FSDP-sharded kernel rather than the activations.

    It carries `nn.dot_product_attention`'s signature: flax's attention passes an
    `attention_fn` only the keyword arguments its signature names, the mask among them.
    """
    names = (pt.BATCH, pt.LENGTH, pt.HEADS, pt.KV)
    query, key, value = (pt.constrain(t, *names) for t in (query, key, value))
    return pt.constrain(nn.dot_product_attention(query, key, value, *args, **kwargs), *names)


constrained_attention.__signature__ = inspect.signature(nn.dot_product_attention)  # type: ignore[attr-defined]


class SelfAttention(nn.Module):
    """Multi-head self-attention; keys where `valid` is False are ignored."""

    num_heads: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        kernel_init = nn.initializers.xavier_uniform()
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=pt.param_init(kernel_init, pt.EMBED, pt.HEADS, pt.KV),
            bias_init=pt.param_init(nn.initializers.zeros, pt.HEADS, pt.KV),
            out_kernel_init=pt.param_init(kernel_init, pt.HEADS, pt.KV, pt.EMBED),
            out_bias_init=pt.param_init(nn.initializers.zeros, pt.EMBED),
            force_fp32_for_softmax=True,
            attention_fn=constrained_attention,
            dropout_rate=self.attention_dropout_rate,
            deterministic=not train,
            name="attention",
        )(x, x, mask=key_padding_mask(valid))
        return nn.Dropout(self.dropout_rate)(y, deterministic=not train)


class BlockFields(nn.Module):
    """The widths and dropout rates of a pre-LN encoder block, declared once for the
    block and for the modules that build blocks from their own fields."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    dtype: Any = jnp.float32  # computation; parameters are float32


BLOCK_FIELDS = ("num_heads", "mlp_dim", "dropout_rate", "attention_dropout_rate", "dtype")


def block_kwargs(module: BlockFields | Encoder) -> dict[str, Any]:
    """`module`'s block widths and dropout rates, to build blocks (or stacks) with them."""
    return {name: getattr(module, name) for name in BLOCK_FIELDS}


class EncoderBlock(BlockFields):
    """Pre-LayerNorm Transformer block: x + Attn(LN(x)); x + MLP(LN(x)).

    Subclasses may replace `feed_forward` (e.g. separate MLPs for some positions).
    """

    def attention(self, x: Array, valid: Array | None, *, train: bool) -> Array:
        """The attention half, x + Attn(LN(x)); call from a compact method."""
        y = pt.layer_norm(dtype=self.dtype, name="ln_attention")(x)
        return x + SelfAttention(
            self.num_heads,
            self.dropout_rate,
            self.attention_dropout_rate,
            dtype=self.dtype,
            name="self_attention",
        )(y, valid, train=train)

    def feed_forward(self, x: Array, *, train: bool, prefix: str = "") -> Array:
        """The feed-forward half, x + MLP(LN(x)), in `{prefix}mlp` and `ln_{prefix}mlp`."""
        y = pt.layer_norm(dtype=self.dtype, name=f"ln_{prefix}mlp")(x)
        return x + MlpBlock(
            self.mlp_dim, dropout_rate=self.dropout_rate, dtype=self.dtype, name=f"{prefix}mlp"
        )(y, train=train)

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        x = self.feed_forward(self.attention(x, valid, train=train), train=train)
        return pt.constrain_tokens(x)


class Encoder(nn.Module):
    """`num_layers` encoder blocks (rematerialised by `remat`) and a final LayerNorm."""

    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    dtype: Any = jnp.float32
    remat: str = "none"  # a `partitioning.REMAT_POLICIES` name

    def make_block(self, index: int) -> nn.Module:
        """Block `index`, named `block_{index}`; subclasses may build other blocks."""
        return pt.remat(EncoderBlock, self.remat)(**block_kwargs(self), name=f"block_{index}")

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        x = pt.constrain_tokens(x.astype(self.dtype))
        for i in range(self.num_layers):
            x = self.make_block(i)(x, valid, train=train)
        return pt.layer_norm(dtype=self.dtype, name="ln_final")(x)


def masked_mean_pool(x: Array, valid: Array | None) -> Array:
    """Mean over the sequence axis of [B, L, D] in float32, counting only valid positions."""
    x = x.astype(jnp.float32)
    if valid is None:
        return x.mean(axis=1)
    weights = valid.astype(x.dtype)[..., None]
    return (x * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


def pool(x: Array, kind: str, valid: Array | None = None) -> Array:
    """`gap` (masked mean) or `token` (the first position, a class token)."""
    if kind == "gap":
        return masked_mean_pool(x, valid)
    if kind == "token":
        return x[:, 0]
    raise ValueError(f"pooling must be 'gap' or 'token', got {kind!r}")


class AddPositionEmbedding(nn.Module):
    """Adds a learned (float32) position embedding of shape [1, L, D]."""

    std: float = 0.02

    @nn.compact
    def __call__(self, x: Array) -> Array:
        init = pt.param_init(nn.initializers.normal(self.std), pt.UNSHARDED, pt.LENGTH, pt.EMBED)
        pos = self.param("pos_embedding", init, (1,) + x.shape[1:], jnp.float32)
        return x + pos.astype(x.dtype)
