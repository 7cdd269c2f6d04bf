"""AdaTape-parity: one input token, a tape read from the sequence's symbols, a Transformer.

Registered as `adatape_parity`. Batch `inputs` [B, L, F] float (one-hot symbols),
`label` [B] int. As released: the flattened sequence is projected by a Dense layer into
one input token; the `input` bank is a Dense projection of each position's symbol
(position information optional, `bank_position`); ATR reads from it with the input
token as query; a small Transformer runs on [input token ; tape]; the head reads the
pooled output (masked mean, or the input token with pooling 'token').
"""

from __future__ import annotations

import flax.linen as nn
import jax
import ml_collections

from framework import registry
from framework.models import base, layers, vit
from projects.adatape import settings, tape_bank
from projects.adatape.encoder import AdaTapeEncoder

Array = jax.Array


class AdaTapeParityModule(nn.Module):
    """Input token, symbol (or learned) bank, AdaTape encoder, pooling, head."""

    num_classes: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    tape: settings.AdaTapeSettings
    pooling: str = "gap"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    head_bias_init: float = 0.0

    @nn.compact
    def __call__(self, inputs: Array, *, train: bool) -> Array:
        flat = inputs.reshape(inputs.shape[0], -1)
        x = nn.Dense(self.hidden_size, name="input_projection")(flat)[:, None, :]
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        if self.tape.bank_type == "input":
            bank = tape_bank.SymbolTapeBank(
                self.hidden_size, self.tape.bank_position, name="tape_bank"
            )(inputs)
        else:
            bank = tape_bank.LearnedTapeBank(
                self.tape.bank_size, self.hidden_size, name="tape_bank"
            )()
        x, valid, _ = AdaTapeEncoder(
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            tape=self.tape,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            name="encoder",
        )(x, bank, train=train)
        x = layers.pool(x, self.pooling, valid)
        return vit.ClassifierHead(self.num_classes, self.head_bias_init, name="classifier")(x)


@registry.MODELS.register("adatape_parity")
class AdaTapeParity(base.ClassificationModel):
    """AdaTape on sequences of symbols (the parity task)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        config.hidden_size = 64
        config.num_layers = 2
        config.num_heads = 4
        config.mlp_dim = 256
        config.dropout_rate = 0.0
        config.attention_dropout_rate = 0.0
        config.pooling = "gap"  # gap (masked mean) | token (the input token)
        config.head_bias_init = 0.0
        settings.add_adatape_fields(config, insert_layer=0)
        # A parity bank has one entry per position (32): 10 reads of 3 fit in it.
        config.num_candidates = 3
        return config

    def build_module(self) -> nn.Module:
        c = self.config
        vit.check_pooling(c.pooling)
        tape = settings.settings_from_config(
            c, hidden_size=c.hidden_size, num_heads=c.num_heads, num_layers=c.num_layers
        )
        return AdaTapeParityModule(
            num_classes=self.num_classes,
            hidden_size=c.hidden_size,
            num_layers=c.num_layers,
            num_heads=c.num_heads,
            mlp_dim=c.mlp_dim,
            tape=tape,
            pooling=c.pooling,
            dropout_rate=c.dropout_rate,
            attention_dropout_rate=c.attention_dropout_rate,
            head_bias_init=c.head_bias_init,
        )
