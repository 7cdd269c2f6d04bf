"""AdaTape-ViT: a pre-LN ViT whose input sequence grows by adaptively read tape tokens.

Registered as `adatape_vit`. Batch `inputs` [B, H, W, C] float, `label` [B] int.
The ViT classifier of `framework.models.vit` (sizes, stem, head) with the AdaTape
encoder and a tape bank.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections

from framework.config import registry
from framework.errors import ConfigError
from framework.models import base, classifier, vit
from projects.adatape import tape_bank
from projects.adatape.encoder import (
    AdaTapeClassifier,
    TapeEncoding,
    adatape_encoder,
    bank_flops,
    encoder_flops,
)
from projects.adatape.settings import AdaTapeSettings

Array = jax.Array


class AdaTapeViTModule(TapeEncoding, vit.ViTClassifierModule, kw_only=True):
    """Stem, tape bank, AdaTape encoder, masked pooling, head."""

    settings: AdaTapeSettings

    def input_bank(self, inputs: Array) -> Array:
        patch = self.settings.bank_patch_size
        return tape_bank.ImageTapeBank(
            self.size.hidden_size, patch, dtype=self.dtype, name="tape_bank"
        )(inputs)


@registry.MODELS.register("adatape_vit")
class AdaTapeViT(AdaTapeClassifier):
    """AdaTape-ViT image classifier (`variant` e.g. 'S/16'; tape fields as released)."""

    # bank_patch_size released: 8 at 224 px (784 entries); 2 suits small images.
    tape_defaults = {"tape_insert_layer": 1, "bank_patch_size": 2}

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        vit.add_vit_fields(config, "nano/4")
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> tuple[vit.ViTSize, AdaTapeSettings]:
        """Checks the fields (ConfigError naming the key); returns the size and settings."""
        super().check_config(config)
        size = vit.check_vit_fields(config)
        settings = cls.tape_settings(
            config,
            hidden_size=size.hidden_size,
            num_heads=size.num_heads,
            num_layers=size.num_layers,
        )
        if settings.query_source == "token" and config.pooling != "token":
            raise ConfigError(
                "config.model.query_source='token' needs config.model.pooling='token' "
                "(a class token)"
            )
        return size, settings

    def build_module(self) -> nn.Module:
        c = self.config
        skeleton = classifier.skeleton_kwargs(c)
        size, settings = self.check_config(c)
        return AdaTapeViTModule(
            num_classes=self.num_classes,
            size=size,
            settings=settings,
            encoder=adatape_encoder(size.num_layers, size.num_heads, size.mlp_dim, settings, c),
            **skeleton,
        )

    def analytical_flops(self, params: Any, batch: base.Batch) -> float:
        """Stem, tape bank, AdaTape encoder (`encoder_flops`), head."""
        size, settings = self.check_config(self.config)
        stem, tokens = vit.stem_flops(params, batch, size.patch_size, self.config.pooling)
        entries = settings.bank_size
        if settings.bank_type == "input":
            height, width = batch["inputs"].shape[1:3]
            patch = settings.bank_patch_size
            entries = (height // patch) * (width // patch)
        encoder = encoder_flops(params["encoder"], settings, tokens, entries)
        return stem + bank_flops(params, entries) + encoder + vit.head_flops(params)
