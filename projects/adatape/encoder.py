"""The AdaTape encoder: blocks, Adaptive Tape Reading, then blocks on [tokens ; tape].

Shared by AdaTape-ViT and AdaTape-parity (`encode_with_tape` is their skeleton's
encode step: tape bank, then this encoder). It sows the ponder loss
(`ponder_weight * R`, aux loss `ponder`), the ponder cost R (aux metric) and the tape
length (aux histogram), all per example.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework.models import base, classifier, layers
from projects.adatape import atr, tape_bank, tape_layers
from projects.adatape.settings import AdaTapeSettings

Array = jax.Array


class AdaTapeEncoder(nn.Module):
    """`insert_layer` blocks on the tokens, ATR, the other blocks on [tokens ; tape].

    Returns (final tokens [B, L + T, D], validity [B, L + T], the `TapeReading`).
    """

    num_layers: int
    num_heads: int
    mlp_dim: int
    tape: AdaTapeSettings
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0

    @nn.compact
    def __call__(
        self, x: Array, bank: Array, *, train: bool
    ) -> tuple[Array, Array, atr.TapeReading]:
        s = self.tape
        for i in range(s.insert_layer):
            x = layers.EncoderBlock(
                self.num_heads,
                self.mlp_dim,
                self.dropout_rate,
                self.attention_dropout_rate,
                name=f"block_{i}",
            )(x, train=train)

        reading = atr.AdaptiveTapeReading(
            key_dim=s.key_dim,
            max_tape_tokens=s.max_tape_tokens,
            num_candidates=s.num_candidates,
            threshold=s.threshold,
            step_cost=s.step_cost,
            query_update=s.query_update,
            query_noise_std=s.query_noise_std,
            bank_mask_rate=s.bank_mask_rate,
            early_exit=s.early_exit,
            name="atr",
        )(atr.query_from_tokens(x, s.query_source), bank, train=train)
        tape = reading.tape
        if s.tape_mlp_dim:
            tape = tape_layers.TapeGLU(s.tape_mlp_dim, name="tape_mlp")(tape)
        tape = tape * reading.valid[..., None].astype(tape.dtype)

        base.sow_aux_loss(self, "ponder", s.ponder_weight * reading.ponder)
        base.sow_aux_metric(self, "ponder_cost", reading.ponder)
        base.sow_aux_histogram(self, "tape_length", reading.length.astype(jnp.float32))

        x = jnp.concatenate([x, tape.astype(x.dtype)], axis=1)
        valid = jnp.concatenate(
            [jnp.ones(x.shape[:1] + (x.shape[1] - tape.shape[1],), bool), reading.valid], axis=1
        )
        x = tape_layers.TapeBlocks(
            num_layers=self.num_layers - s.insert_layer,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            num_tape=s.max_tape_tokens,
            first_index=s.insert_layer,
            separate_tape_ffn=s.separate_tape_ffn,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            name="tape_blocks",
        )(x, valid, train=train)
        return x, valid, reading


def encode_with_tape(
    module: classifier.ClassifierSkeleton,
    x: Array,
    input_bank: Callable[[], Array],
    tape: AdaTapeSettings,
    *,
    train: bool,
) -> tuple[Array, Array]:
    """Tape bank, then the AdaTape encoder from `module.encoder`: (tokens, validity).

    The bank is `input_bank()` for bank_type 'input', else learned entries; call from
    the module's `encode`, so that the bank is the module's 'tape_bank'.
    """
    if tape.bank_type == "input":
        bank = input_bank()
    else:
        bank = tape_bank.LearnedTapeBank(tape.bank_size, x.shape[-1], name="tape_bank")()
    x, valid, _ = module.encoder(name="encoder")(x, bank, train=train)
    return x, valid


def adatape_encoder(
    num_layers: int,
    num_heads: int,
    mlp_dim: int,
    tape: AdaTapeSettings,
    config: ml_collections.ConfigDict,
) -> classifier.EncoderFactory:
    """An `AdaTapeEncoder` factory, dropout rates from `config`."""
    return classifier.encoder_factory(
        AdaTapeEncoder, num_layers, num_heads, mlp_dim, tape, config=config
    )
