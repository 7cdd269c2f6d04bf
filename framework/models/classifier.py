"""The classifier skeleton every registered classifier shares, and its config fields.

`ClassifierSkeleton` runs: tokens (`embed`: stem or embedding, optional class token,
position embedding, dropout) -> `encode` (the encoder, built by the `encoder` factory
under the name 'encoder') -> pooling -> `classify` (zero-initialised head). Models
supply only what differs: the sequence and ViT classifiers their stems
(`transformer.SequenceClassifierModule`, `vit.ViTClassifierModule`), projects their
encoders (a Universal Transformer, AdaTape's encoder with tape reading).

Config: `add_classifier_fields` declares the fields the skeleton reads,
`check_classifier_fields` checks them (at config time, from the model's `check_config`)
and `skeleton_kwargs` turns them into module arguments.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework.config import fields
from framework.errors import ConfigError
from framework.models import layers
from framework.models import partitioning as pt

Array = jax.Array
EncoderFactory = Callable[..., nn.Module]

POOLING_KINDS = ("gap", "token")


class ClassToken(nn.Module):
    """Prepends a learned (zero-initialised) class token `cls` to [B, L, D]."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        init = pt.param_init(nn.initializers.zeros, pt.UNSHARDED, pt.UNSHARDED, pt.EMBED)
        cls = self.param("cls", init, (1, 1, x.shape[-1]), jnp.float32).astype(x.dtype)
        return jnp.concatenate([jnp.tile(cls, (x.shape[0], 1, 1)), x], axis=1)


class ClassifierHead(nn.Module):
    """Linear head with a zero kernel, in float32 (it feeds the loss); the bias init is
    configurable (e.g. -6.9)."""

    num_classes: int
    bias_init: float = 0.0

    @nn.compact
    def __call__(self, x: Array) -> Array:
        return pt.dense(
            self.num_classes,
            (pt.EMBED, pt.CLASSES),
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.constant(self.bias_init),
            name="head",
        )(x.astype(jnp.float32))


def finish_tokens(x: Array, *, class_token: bool, dropout_rate: float, train: bool) -> Array:
    """Optional class token (submodule 'class_token'), learned position embedding,
    dropout; called from the embedding module's compact method."""
    if class_token:
        x = ClassToken(name="class_token")(x)
    x = layers.AddPositionEmbedding(name="pos_embedding")(x)
    return nn.Dropout(dropout_rate)(x, deterministic=not train)


class ClassifierSkeleton(nn.Module):
    """`embed` -> `encode` -> pooling (`gap` | `token`) -> `classify`.

    `encoder` builds the encoder module (called with `name='encoder'`); by default it
    maps [B, L, D] tokens to [B, L, D] and every position is valid. Subclasses define
    `embed` and may override `encode` (e.g. to pass a tape bank and return validity)
    and `classify`.
    """

    num_classes: int
    encoder: EncoderFactory
    pooling: str = "gap"
    dropout_rate: float = 0.0
    head_bias_init: float = 0.0
    dtype: Any = jnp.float32  # computation of the stem (the encoder has its own)

    def embed(self, inputs: Array, *, train: bool) -> Array:
        """Inputs -> [B, L, D] tokens."""
        raise NotImplementedError

    def encode(self, x: Array, inputs: Array, *, train: bool) -> tuple[Array, Array | None]:
        """Tokens -> (encoded tokens, validity [B, L'] or None for all valid)."""
        return self.encoder(name="encoder")(x, train=train), None

    def classify(self, pooled: Array) -> Array:
        """[B, D] -> [B, num_classes] logits."""
        return ClassifierHead(self.num_classes, self.head_bias_init, name="classifier")(pooled)

    @nn.compact
    def __call__(self, inputs: Array, *, train: bool) -> Array:
        x = self.embed(inputs, train=train)
        x, valid = self.encode(x, inputs, train=train)
        return self.classify(layers.pool(x, self.pooling, valid))


def check_pooling(pooling: str) -> None:
    """Raises ConfigError unless `pooling` is one of POOLING_KINDS."""
    if pooling not in POOLING_KINDS:
        raise ConfigError(f"config.model.pooling must be 'gap' or 'token', got {pooling!r}")


def add_classifier_fields(config: ml_collections.ConfigDict, *, pooling: str) -> None:
    """Declares the fields the skeleton and the standard encoder read."""
    config.pooling = pooling  # gap (mean) | token (the first token, e.g. a class token)
    config.dropout_rate = 0.0
    config.attention_dropout_rate = 0.0
    config.head_bias_init = 0.0
    pt.add_precision_fields(config)


def check_classifier_fields(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the `config.model.` key of a bad skeleton field."""
    check_pooling(config.pooling)
    for key in ("dropout_rate", "attention_dropout_rate"):
        fields.check_rate(f"config.model.{key}", config[key])
    if not math.isfinite(config.head_bias_init):
        raise ConfigError(
            f"config.model.head_bias_init must be finite, got {config.head_bias_init}"
        )
    pt.check_precision_fields(config)


def encoder_factory(
    encoder_cls: type[nn.Module], *widths: Any, config: ml_collections.ConfigDict
) -> EncoderFactory:
    """`encoder_cls(*widths, dropout_rate=..., attention_dropout_rate=..., dtype=...,
    remat=...)` from config."""
    return functools.partial(
        encoder_cls,
        *widths,
        dropout_rate=config.dropout_rate,
        attention_dropout_rate=config.attention_dropout_rate,
        dtype=pt.compute_dtype(config),
        remat=config.get("remat", "none"),
    )


def skeleton_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The skeleton's module arguments from `add_classifier_fields` (pooling checked)."""
    check_pooling(config.pooling)
    return dict(
        pooling=config.pooling,
        dropout_rate=config.dropout_rate,
        head_bias_init=config.head_bias_init,
        dtype=pt.compute_dtype(config),
    )
