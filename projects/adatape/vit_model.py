"""AdaTape-ViT: a pre-LN ViT whose input sequence grows by adaptively read tape tokens.

Registered as `adatape_vit`. Batch `inputs` [B, H, W, C] float, `label` [B] int.
Builds on the ViT pieces in `framework.models.vit` (sizes, stem, head).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections

from framework import registry
from framework.models import base, layers, vit
from framework.registry import ConfigError
from projects.adatape import settings, tape_bank
from projects.adatape.encoder import AdaTapeEncoder

Array = jax.Array


class AdaTapeViTModule(nn.Module):
    """Stem, tape bank, AdaTape encoder, masked pooling, head."""

    num_classes: int
    size: vit.ViTSize
    tape: settings.AdaTapeSettings
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
        if self.tape.bank_type == "input":
            bank = tape_bank.ImageTapeBank(
                s.hidden_size, self.tape.bank_patch_size, name="tape_bank"
            )(inputs)
        else:
            bank = tape_bank.LearnedTapeBank(self.tape.bank_size, s.hidden_size, name="tape_bank")()
        x, valid, _ = AdaTapeEncoder(
            num_layers=s.num_layers,
            num_heads=s.num_heads,
            mlp_dim=s.mlp_dim,
            tape=self.tape,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            name="encoder",
        )(x, bank, train=train)
        x = layers.pool(x, self.pooling, valid)
        return vit.ClassifierHead(self.num_classes, self.head_bias_init, name="classifier")(x)


@registry.MODELS.register("adatape_vit")
class AdaTapeViT(base.ClassificationModel):
    """AdaTape-ViT image classifier (`variant` e.g. 'S/16'; tape fields as released)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        vit.add_vit_fields(config, "nano/4")
        settings.add_adatape_fields(config, insert_layer=1)
        # Released: 8 at 224 px (784 entries); 2 suits the small default images.
        config.bank_patch_size = 2
        return config

    def build_module(self) -> nn.Module:
        c = self.config
        vit.check_pooling(c.pooling)
        size = vit.resolve_size(c)
        tape = settings.settings_from_config(
            c, hidden_size=size.hidden_size, num_heads=size.num_heads, num_layers=size.num_layers
        )
        if tape.query_source == "token" and c.pooling != "token":
            raise ConfigError(
                "model.query_source='token' needs model.pooling='token' (a class token)"
            )
        return AdaTapeViTModule(
            num_classes=self.num_classes,
            size=size,
            tape=tape,
            pooling=c.pooling,
            dropout_rate=c.dropout_rate,
            attention_dropout_rate=c.attention_dropout_rate,
            head_bias_init=c.head_bias_init,
        )
