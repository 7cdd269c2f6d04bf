"""Vision Transformer classifier (pre-LN ViT) and its reusable pieces.

The pieces (`PatchEmbedding`, `ViTStem`, `ViTClassifierModule`, `resolve_size`,
`SettingsViTClassifier`) are shared by the models that build on ViT (AdaTape-ViT, UViT,
A-ViT), so they live here once; the skeleton itself (encoder factory, pooling, head)
is `framework.models.classifier`.

Sizes: `model.variant` names a size and a patch, e.g. 'S/16' or 'B/32'; any of
`hidden_size`, `num_layers`, `num_heads`, `mlp_dim`, `patch_size` set explicitly
overrides the variant. 'nano' and 'micro' are tiny sizes for tests and small data.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework.config import fields, registry
from framework.errors import ConfigError
from framework.models import base, classifier, flops, layers
from framework.models import partitioning as pt

Array = jax.Array

# name: (hidden_size, num_layers, num_heads, mlp_dim)
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "nano": (32, 2, 2, 64),
    "micro": (64, 4, 4, 256),
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "H": (1280, 32, 16, 5120),
}


@dataclasses.dataclass(frozen=True)
class ViTSize:
    """The widths of a ViT encoder."""

    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    patch_size: int


def parse_variant(variant: str) -> ViTSize:
    """'S/16' -> the S widths with 16x16 patches."""
    try:
        name, patch = variant.split("/")
        return ViTSize(*VIT_SIZES[name], patch_size=int(patch))
    except (ValueError, KeyError):
        raise ConfigError(
            f"model.variant must be '<size>/<patch>' with size in {sorted(VIT_SIZES)}, "
            f"got {variant!r}"
        ) from None


def add_size_fields(config: ml_collections.ConfigDict, variant: str) -> None:
    """Declares `variant` and the explicit size overrides (None: from the variant)."""
    config.variant = variant
    for field in ("hidden_size", "num_layers", "num_heads", "mlp_dim", "patch_size"):
        config[field] = ml_collections.config_dict.placeholder(int)


def resolve_size(config: ml_collections.ConfigDict) -> ViTSize:
    """The variant's sizes with any explicitly set field taking precedence."""
    size = parse_variant(config.variant)
    overrides = {
        f.name: config[f.name] for f in dataclasses.fields(ViTSize) if config[f.name] is not None
    }
    size = dataclasses.replace(size, **overrides)
    for field in dataclasses.fields(ViTSize):
        value = getattr(size, field.name)
        if value <= 0:
            where = "" if config[field.name] is not None else f" (from {config.variant!r})"
            raise ConfigError(f"config.model.{field.name} must be positive, got {value}{where}")
    if size.hidden_size % size.num_heads:
        raise ConfigError(
            f"config.model.num_heads={size.num_heads} does not divide "
            f"config.model.hidden_size={size.hidden_size}"
        )
    return size


def check_vit_fields(config: ml_collections.ConfigDict) -> ViTSize:
    """Checks the fields `add_vit_fields` declares (ConfigError naming the key); returns
    the resolved size."""
    size = resolve_size(config)
    classifier.check_classifier_fields(config)
    return size


class PatchEmbedding(nn.Module):
    """[B, H, W, C] image -> [B, (H/p)*(W/p), D] tokens (conv, kernel = stride = p)."""

    hidden_size: int
    patch_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: Array) -> Array:
        p = self.patch_size
        if images.shape[1] % p or images.shape[2] % p:
            # Known only once the data's shape is: raised while the model is first traced,
            # before anything is written.
            raise ConfigError(
                f"config.model.patch_size={p} does not divide the images' size "
                f"{images.shape[1]}x{images.shape[2]}"
            )
        x = nn.Conv(
            self.hidden_size,
            (p, p),
            strides=(p, p),
            padding="VALID",
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=pt.param_init(
                nn.initializers.lecun_normal(), pt.PATCH, pt.PATCH, pt.PATCH, pt.EMBED
            ),
            bias_init=pt.param_init(nn.initializers.zeros, pt.EMBED),
            name="conv",
        )(images)
        return pt.constrain_tokens(x.reshape(x.shape[0], -1, self.hidden_size))


class ViTStem(nn.Module):
    """Patch embedding, optional class token, learned position embedding, dropout."""

    hidden_size: int
    patch_size: int
    class_token: bool = False
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> Array:
        x = PatchEmbedding(
            self.hidden_size, self.patch_size, dtype=self.dtype, name="patch_embedding"
        )(images)
        return classifier.finish_tokens(
            x, class_token=self.class_token, dropout_rate=self.dropout_rate, train=train
        )


class ViTClassifierModule(classifier.ClassifierSkeleton, kw_only=True):
    """Stem, encoder (pre-LN by default), pooling (`gap` | `token`), head."""

    size: ViTSize

    def embed(self, inputs: Array, *, train: bool) -> Array:
        s = self.size
        return ViTStem(
            s.hidden_size,
            s.patch_size,
            class_token=self.pooling == "token",
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            name="stem",
        )(inputs, train=train)


def vit_encoder(size: ViTSize, config: ml_collections.ConfigDict) -> classifier.EncoderFactory:
    """The standard pre-LN encoder at `size`."""
    return classifier.encoder_factory(
        layers.Encoder, size.num_layers, size.num_heads, size.mlp_dim, config=config
    )


def stem_flops(params: Any, batch: base.Batch, patch_size: int, pooling: str) -> tuple[float, int]:
    """(the patch embedding's FLOPs per example, tokens the encoder sees: the patches and a
    class token with `token` pooling), from the images' shape in `batch`."""
    height, width = batch["inputs"].shape[1:3]
    patches = (height // patch_size) * (width // patch_size)
    conv = flops.kernel_params(params["stem"]["patch_embedding"])
    return flops.dense(conv, patches), patches + int(pooling == "token")


def head_flops(params: Any) -> float:
    """The classifier head on one pooled vector."""
    return flops.dense(flops.kernel_params(params["classifier"]), 1)


def add_vit_fields(config: ml_collections.ConfigDict, variant: str) -> None:
    """The fields every ViT-based classifier shares."""
    add_size_fields(config, variant)
    classifier.add_classifier_fields(config, pooling="token")


@registry.MODELS.register("vit_classifier")
class ViTClassifier(base.ClassificationModel):
    """ViT image classifier; batch `inputs` [B, H, W, C] float, `label` [B] int."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        add_vit_fields(config, "nano/4")
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        super().check_config(config)
        check_vit_fields(config)

    def build_module(self) -> nn.Module:
        c = self.config
        size = resolve_size(c)
        return ViTClassifierModule(
            num_classes=self.num_classes,
            size=size,
            encoder=vit_encoder(size, c),
            **classifier.skeleton_kwargs(c),
        )

    def analytical_flops(self, params: Any, batch: base.Batch) -> float:
        """Patch embedding, every block on every token, the head on the pooled token."""
        stem, tokens = stem_flops(
            params, batch, resolve_size(self.config).patch_size, self.config.pooling
        )
        encoder = flops.self_attention_encoder(params["encoder"], tokens)
        return stem + encoder + head_flops(params)


class SettingsViTClassifier(base.ClassificationModel):
    """A ViT classifier whose encoder is built from a settings dataclass (UViT, A-ViT).

    `settings_class` is a frozen dataclass declared as config fields
    (`framework.config.fields`) whose `resolved(num_layers)` fills in what depends on the
    variant's depth; a subclass builds its encoder in `encoder(size, settings)`. Stem,
    pooling and head are the ViT's.
    """

    settings_class: ClassVar[type]

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        add_vit_fields(config, "nano/4")
        fields.declare(config, cls.settings_class)
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> tuple[ViTSize, Any]:
        """Checks the fields (ConfigError naming the key); returns the size and settings."""
        super().check_config(config)
        size = check_vit_fields(config)
        return size, fields.build(cls.settings_class, config).resolved(size.num_layers)

    def encoder(self, size: ViTSize, settings: Any) -> classifier.EncoderFactory:
        """The encoder at `size` with the resolved `settings`."""
        raise NotImplementedError

    def encoder_flops(
        self, encoder_params: Any, size: ViTSize, settings: Any, tokens: int
    ) -> float | None:
        """Forward FLOPs per example of the encoder on `tokens` tokens (see
        `BaseModel.analytical_flops`); None: no count."""
        del encoder_params, size, settings, tokens
        return None

    def analytical_flops(self, params: Any, batch: base.Batch) -> float | None:
        """The ViT's stem and head around `encoder_flops`."""
        size, settings = self.check_config(self.config)
        stem, tokens = stem_flops(params, batch, size.patch_size, self.config.pooling)
        encoder = self.encoder_flops(params["encoder"], size, settings, tokens)
        return None if encoder is None else stem + encoder + head_flops(params)

    def build_module(self) -> nn.Module:
        size, settings = self.check_config(self.config)
        return ViTClassifierModule(
            num_classes=self.num_classes,
            size=size,
            encoder=self.encoder(size, settings),
            **classifier.skeleton_kwargs(self.config),
        )
