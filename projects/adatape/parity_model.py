"""AdaTape-parity: one input token, a tape read from the sequence's symbols, a Transformer.

Registered as `adatape_parity`. Batch `inputs` [B, L, F] float (one-hot symbols),
`label` [B] int. As released: the flattened sequence is projected by a Dense layer into
one input token; the `input` bank is a Dense projection of each position's symbol
(position information optional, `bank_position`); ATR reads from it with the input
token as query; a small Transformer runs on [input token ; tape]; the head reads the
pooled output (masked mean, or the input token with pooling 'token').
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework.config import registry
from framework.models import base, classifier, flops, transformer
from framework.models import partitioning as pt
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


class AdaTapeParityModule(TapeEncoding, classifier.ClassifierSkeleton, kw_only=True):
    """Input token, symbol (or learned) bank, AdaTape encoder, pooling, head."""

    hidden_size: int
    settings: AdaTapeSettings

    def embed(self, inputs: Array, *, train: bool) -> Array:
        flat = inputs.reshape(inputs.shape[0], -1)
        x = pt.dense(
            self.hidden_size, (pt.UNSHARDED, pt.EMBED), dtype=self.dtype, name="input_projection"
        )(flat)[:, None, :]
        return nn.Dropout(self.dropout_rate)(x, deterministic=not train)

    def input_bank(self, inputs: Array) -> Array:
        s = self.settings
        return tape_bank.SymbolTapeBank(
            self.hidden_size, s.bank_position, s.bank_init, dtype=self.dtype, name="tape_bank"
        )(inputs)

    def input_bank_valid(self, inputs: Array) -> Array | None:
        """One-hot inputs: padding positions (all-zero, e.g. a length curriculum's) are not
        read. Raw values (one feature, where 0 is a symbol): every position is real."""
        if inputs.shape[-1] == 1:
            return None
        return jnp.any(inputs != 0, axis=-1)


@registry.MODELS.register("adatape_parity")
class AdaTapeParity(AdaTapeClassifier):
    """AdaTape on sequences of symbols (the parity task)."""

    # A parity bank has one entry per position (32): 10 reads of 3 fit in it.
    tape_defaults = {"tape_insert_layer": 0, "num_candidates": 3}

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        # pooling: gap (masked mean) | token (the input token)
        transformer.add_sequence_fields(config, vocab_size=False)
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> AdaTapeSettings:
        """Checks the fields (ConfigError naming the key); returns the tape settings."""
        super().check_config(config)
        transformer.check_sequence_fields(config)
        return cls.tape_settings(
            config,
            hidden_size=config.hidden_size,
            num_heads=config.num_heads,
            num_layers=config.num_layers,
        )

    def build_module(self) -> nn.Module:
        c = self.config
        skeleton = classifier.skeleton_kwargs(c)
        settings = self.check_config(c)
        return AdaTapeParityModule(
            num_classes=self.num_classes,
            hidden_size=c.hidden_size,
            settings=settings,
            encoder=adatape_encoder(c.num_layers, c.num_heads, c.mlp_dim, settings, c),
            **skeleton,
        )

    def analytical_flops(self, params: Any, batch: base.Batch) -> float:
        """The input token's projection (of the flattened sequence), the tape bank (one
        entry per position, or learned), the AdaTape encoder on one token, the head."""
        settings = self.check_config(self.config)
        entries = settings.bank_size
        if settings.bank_type == "input":
            entries = batch["inputs"].shape[1]
        embed = flops.dense(flops.kernel_params(params["input_projection"]), 1)
        encoder = encoder_flops(params["encoder"], settings, 1, entries)
        head = flops.dense(flops.kernel_params(params["classifier"]), 1)
        return embed + bank_flops(params, entries) + encoder + head
