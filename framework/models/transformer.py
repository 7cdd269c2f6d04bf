"""Transformer encoder classifier for sequences (e.g. the parity task)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework import registry
from framework.models import base, layers

Array = jax.Array


class SequenceEmbedding(nn.Module):
    """Embeds [B, L] int tokens (lookup) or [B, L, F] features (Dense) to [B, L, D]."""

    hidden_size: int
    vocab_size: int | None = None

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        if jnp.issubdtype(inputs.dtype, jnp.integer):
            if self.vocab_size is None:
                raise ValueError("integer inputs need model.vocab_size")
            return nn.Embed(self.vocab_size, self.hidden_size, name="token_embedding")(inputs)
        return nn.Dense(self.hidden_size, name="input_projection")(inputs)


class TransformerClassifierModule(nn.Module):
    """Embedding, optional class token, position embedding, encoder, pooling, head."""

    num_classes: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    pooling: str = "gap"
    vocab_size: int | None = None
    head_bias_init: float = 0.0

    @nn.compact
    def __call__(self, inputs: Array, *, train: bool) -> Array:
        x = SequenceEmbedding(self.hidden_size, self.vocab_size, name="embedding")(inputs)
        if self.pooling == "token":
            cls = self.param("cls", nn.initializers.zeros, (1, 1, self.hidden_size))
            x = jnp.concatenate([jnp.tile(cls, (x.shape[0], 1, 1)), x], axis=1)
        x = layers.AddPositionEmbedding(name="pos_embedding")(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = layers.Encoder(
            self.num_layers,
            self.num_heads,
            self.mlp_dim,
            self.dropout_rate,
            self.attention_dropout_rate,
            name="encoder",
        )(x, train=train)
        x = layers.pool(x, self.pooling)
        return nn.Dense(
            self.num_classes,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.constant(self.head_bias_init),
            name="head",
        )(x)


@registry.MODELS.register("transformer_classifier")
class TransformerClassifier(base.ClassificationModel):
    """A plain pre-LN Transformer encoder classifier over a sequence."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        config.hidden_size = 64
        config.num_layers = 2
        config.num_heads = 4
        config.mlp_dim = 256
        config.dropout_rate = 0.0
        config.attention_dropout_rate = 0.0
        config.pooling = "gap"
        config.vocab_size = ml_collections.config_dict.placeholder(int)
        config.head_bias_init = 0.0
        return config

    def build_module(self) -> nn.Module:
        c = self.config
        return TransformerClassifierModule(
            num_classes=self.num_classes,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            num_heads=c.num_heads,
            mlp_dim=c.mlp_dim,
            dropout_rate=c.dropout_rate,
            attention_dropout_rate=c.attention_dropout_rate,
            pooling=c.pooling,
            vocab_size=c.vocab_size,
            head_bias_init=c.head_bias_init,
        )
