"""Transformer encoder classifier for sequences (e.g. the parity task).

`SequenceClassifierModule` is the sequence form of the shared classifier skeleton
(embedding, optional class token, position embedding, dropout, encoder, pooling, head);
models on sequences supply their encoder (`add_sequence_fields` declares their config,
`check_sequence_fields` checks it).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework.config import fields, registry
from framework.errors import ConfigError
from framework.models import base, classifier, flops, layers
from framework.models import partitioning as pt

Array = jax.Array


class SequenceEmbedding(nn.Module):
    """Embeds [B, L] int tokens (lookup) or [B, L, F] features (Dense) to [B, L, D]."""

    hidden_size: int
    vocab_size: int | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        if jnp.issubdtype(inputs.dtype, jnp.integer):
            if self.vocab_size is None:
                raise ConfigError("integer inputs need config.model.vocab_size")
            return nn.Embed(
                self.vocab_size,
                self.hidden_size,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                embedding_init=pt.param_init(nn.linear.default_embed_init, pt.VOCAB, pt.EMBED),
                name="token_embedding",
            )(inputs)
        return pt.dense(
            self.hidden_size, (pt.UNSHARDED, pt.EMBED), dtype=self.dtype, name="input_projection"
        )(inputs)


class SequenceClassifierModule(classifier.ClassifierSkeleton, kw_only=True):
    """Embedding, optional class token, position embedding, dropout, encoder, pool, head."""

    hidden_size: int
    vocab_size: int | None = None

    def embed(self, inputs: Array, *, train: bool) -> Array:
        x = SequenceEmbedding(
            self.hidden_size, self.vocab_size, dtype=self.dtype, name="embedding"
        )(inputs)
        return classifier.finish_tokens(
            x, class_token=self.pooling == "token", dropout_rate=self.dropout_rate, train=train
        )


def sequence_stem_flops(params: Any, batch: base.Batch, pooling: str) -> tuple[float, int]:
    """(the embedding's FLOPs per example, tokens the encoder sees) of a
    `SequenceClassifierModule`: a lookup costs nothing, float features are projected
    at every position; a class token is added with `token` pooling."""
    length = batch["inputs"].shape[1]
    projection = flops.dense(flops.kernel_params(params["embedding"]), length)
    return projection, length + int(pooling == "token")


def add_sequence_fields(
    config: ml_collections.ConfigDict, *, num_layers: bool = True, vocab_size: bool = True
) -> None:
    """Declares a sequence classifier's widths and skeleton fields.

    `num_layers` False: the depth is set elsewhere (e.g. ACT steps); `vocab_size` False:
    the model reads float features only.
    """
    config.hidden_size = 64
    if num_layers:
        config.num_layers = 2
    config.num_heads = 4
    config.mlp_dim = 256
    classifier.add_classifier_fields(config, pooling="gap")
    if vocab_size:
        config.vocab_size = ml_collections.config_dict.placeholder(int)


def check_sequence_fields(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the `config.model.` key of a bad `add_sequence_fields`
    field: widths positive, `num_heads` dividing `hidden_size`, skeleton fields."""
    for key in ("hidden_size", "num_layers", "num_heads", "mlp_dim"):
        if key in config:
            fields.check_positive(f"config.model.{key}", config[key])
    if config.hidden_size % config.num_heads:
        raise ConfigError(
            f"config.model.num_heads={config.num_heads} does not divide "
            f"config.model.hidden_size={config.hidden_size}"
        )
    if config.get("vocab_size") is not None:
        fields.check_positive("config.model.vocab_size", config.vocab_size)
    classifier.check_classifier_fields(config)


@registry.MODELS.register("transformer_classifier")
class TransformerClassifier(base.ClassificationModel):
    """A plain pre-LN Transformer encoder classifier over a sequence."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        add_sequence_fields(config)
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        super().check_config(config)
        check_sequence_fields(config)

    def build_module(self) -> nn.Module:
        c = self.config
        return SequenceClassifierModule(
            num_classes=self.num_classes,
            hidden_size=c.hidden_size,
            vocab_size=c.vocab_size,
            encoder=classifier.encoder_factory(
                layers.Encoder, c.num_layers, c.num_heads, c.mlp_dim, config=c
            ),
            **classifier.skeleton_kwargs(c),
        )

    def analytical_flops(self, params: Any, batch: base.Batch) -> float:
        """Embedding, every block on every token, the head on the pooled vector."""
        stem, tokens = sequence_stem_flops(params, batch, self.config.pooling)
        encoder = flops.self_attention_encoder(params["encoder"], tokens)
        return stem + encoder + flops.dense(flops.kernel_params(params["classifier"]), 1)
