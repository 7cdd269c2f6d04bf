"""Shared Transformer layers: attention with key padding masks, MLP, encoder blocks."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

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

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        out_dim = self.out_dim or x.shape[-1]
        x = nn.Dense(
            self.mlp_dim,
            kernel_init=self.kernel_init,
            bias_init=nn.initializers.normal(1e-6),
            name="fc1",
        )(x)
        x = self.activation(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = nn.Dense(
            out_dim,
            kernel_init=self.kernel_init,
            bias_init=nn.initializers.normal(1e-6),
            name="fc2",
        )(x)
        return nn.Dropout(self.dropout_rate)(x, deterministic=not train)


class SelfAttention(nn.Module):
    """Multi-head self-attention; keys where `valid` is False are ignored."""

    num_heads: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            kernel_init=nn.initializers.xavier_uniform(),
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


BLOCK_FIELDS = ("num_heads", "mlp_dim", "dropout_rate", "attention_dropout_rate")


def block_kwargs(module: BlockFields | Encoder) -> dict[str, Any]:
    """`module`'s block widths and dropout rates, to build blocks (or stacks) with them."""
    return {name: getattr(module, name) for name in BLOCK_FIELDS}


class EncoderBlock(BlockFields):
    """Pre-LayerNorm Transformer block: x + Attn(LN(x)); x + MLP(LN(x)).

    Subclasses may replace `feed_forward` (e.g. separate MLPs for some positions).
    """

    def attention(self, x: Array, valid: Array | None, *, train: bool) -> Array:
        """The attention half, x + Attn(LN(x)); call from a compact method."""
        y = nn.LayerNorm(name="ln_attention")(x)
        return x + SelfAttention(
            self.num_heads, self.dropout_rate, self.attention_dropout_rate, name="self_attention"
        )(y, valid, train=train)

    def feed_forward(self, x: Array, *, train: bool, prefix: str = "") -> Array:
        """The feed-forward half, x + MLP(LN(x)), in `{prefix}mlp` and `ln_{prefix}mlp`."""
        y = nn.LayerNorm(name=f"ln_{prefix}mlp")(x)
        return x + MlpBlock(self.mlp_dim, dropout_rate=self.dropout_rate, name=f"{prefix}mlp")(
            y, train=train
        )

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        return self.feed_forward(self.attention(x, valid, train=train), train=train)


class Encoder(nn.Module):
    """`num_layers` encoder blocks and a final LayerNorm."""

    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0

    def make_block(self, index: int) -> nn.Module:
        """Block `index`, named `block_{index}`; subclasses may build other blocks."""
        return EncoderBlock(**block_kwargs(self), name=f"block_{index}")

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        for i in range(self.num_layers):
            x = self.make_block(i)(x, valid, train=train)
        return nn.LayerNorm(name="ln_final")(x)


def masked_mean_pool(x: Array, valid: Array | None) -> Array:
    """Mean over the sequence axis of [B, L, D], counting only valid positions."""
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
    """Adds a learned position embedding of shape [1, L, D]."""

    std: float = 0.02

    @nn.compact
    def __call__(self, x: Array) -> Array:
        pos = self.param(
            "pos_embedding", nn.initializers.normal(self.std), (1,) + x.shape[1:], x.dtype
        )
        return x + pos
