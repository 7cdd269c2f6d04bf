"""Universal Transformer baselines with ACT: `ut_parity` (sequences) and `uvit` (images).

`ut_parity`: batch `inputs` [B, L, F] float (or [B, L] int with `vocab_size`),
`label` [B]. `uvit`: batch `inputs` [B, H, W, C], `label` [B]; built on the ViT stem
and head, with the shared block applied up to `max_steps` times (default: the
variant's depth).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections

from framework import registry
from framework.models import base, layers, transformer, vit
from projects.baselines import universal

Array = jax.Array


class UTSequenceModule(nn.Module):
    """Embedding, optional class token, position embedding, UT encoder, pooling, head."""

    num_classes: int
    hidden_size: int
    num_heads: int
    mlp_dim: int
    act: universal.ACTSettings
    pooling: str = "gap"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    vocab_size: int | None = None
    head_bias_init: float = 0.0

    @nn.compact
    def __call__(self, inputs: Array, *, train: bool) -> Array:
        x = transformer.SequenceEmbedding(self.hidden_size, self.vocab_size, name="embedding")(
            inputs
        )
        if self.pooling == "token":
            x = vit.ClassToken(name="class_token")(x)
        x = layers.AddPositionEmbedding(name="pos_embedding")(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = universal.UniversalEncoder(
            self.num_heads,
            self.mlp_dim,
            self.act,
            self.dropout_rate,
            self.attention_dropout_rate,
            name="encoder",
        )(x, train=train)
        x = layers.pool(x, self.pooling)
        return vit.ClassifierHead(self.num_classes, self.head_bias_init, name="classifier")(x)


class UViTModule(nn.Module):
    """ViT stem, UT encoder, pooling, head."""

    num_classes: int
    size: vit.ViTSize
    act: universal.ACTSettings
    pooling: str = "token"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    head_bias_init: float = 0.0

    @nn.compact
    def __call__(self, inputs: Array, *, train: bool) -> Array:
        s = self.size
        x = vit.ViTStem(
            s.hidden_size,
            s.patch_size,
            class_token=self.pooling == "token",
            dropout_rate=self.dropout_rate,
            name="stem",
        )(inputs, train=train)
        x = universal.UniversalEncoder(
            s.num_heads,
            s.mlp_dim,
            self.act,
            self.dropout_rate,
            self.attention_dropout_rate,
            name="encoder",
        )(x, train=train)
        x = layers.pool(x, self.pooling)
        return vit.ClassifierHead(self.num_classes, self.head_bias_init, name="classifier")(x)


@registry.MODELS.register("ut_parity")
class UTParity(base.ClassificationModel):
    """Universal Transformer with ACT over a sequence (e.g. parity)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        config.hidden_size = 64
        config.num_heads = 4
        config.mlp_dim = 256
        config.dropout_rate = 0.0
        config.attention_dropout_rate = 0.0
        config.pooling = "gap"
        config.vocab_size = ml_collections.config_dict.placeholder(int)
        config.head_bias_init = 0.0
        universal.add_act_fields(config, max_steps=8)
        return config

    def build_module(self) -> nn.Module:
        c = self.config
        vit.check_pooling(c.pooling)
        return UTSequenceModule(
            num_classes=self.num_classes,
            hidden_size=c.hidden_size,
            num_heads=c.num_heads,
            mlp_dim=c.mlp_dim,
            act=universal.act_settings(c, c.max_steps),
            pooling=c.pooling,
            dropout_rate=c.dropout_rate,
            attention_dropout_rate=c.attention_dropout_rate,
            vocab_size=c.vocab_size,
            head_bias_init=c.head_bias_init,
        )


@registry.MODELS.register("uvit")
class UViT(base.ClassificationModel):
    """Universal ViT with ACT (`variant` sets widths; depth bounds `max_steps`)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        vit.add_vit_fields(config, "nano/4")
        universal.add_act_fields(config, max_steps=None)
        return config

    def build_module(self) -> nn.Module:
        c = self.config
        vit.check_pooling(c.pooling)
        size = vit.resolve_size(c)
        return UViTModule(
            num_classes=self.num_classes,
            size=size,
            act=universal.act_settings(c, size.num_layers),
            pooling=c.pooling,
            dropout_rate=c.dropout_rate,
            attention_dropout_rate=c.attention_dropout_rate,
            head_bias_init=c.head_bias_init,
        )
