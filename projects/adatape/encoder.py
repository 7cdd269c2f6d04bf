"""The AdaTape encoder: blocks, Adaptive Tape Reading, then blocks on [tokens ; tape].

Shared by AdaTape-ViT and AdaTape-parity (`AdaTapeClassifier` is their model base,
`TapeEncoding` their modules' encode step: tape bank, then this encoder). It sows
the ponder loss (`ponder_weight * R`, aux loss `ponder`), the ponder cost R (aux
metric) and the tape length (aux histogram), all per example.

Precision: blocks, tape bank and tape MLP compute in the model's `dtype`; ATR reads in
float32 (`atr`), so its halting, ponder cost and tape lengths do not depend on it. The
blocks are rematerialised by `remat`; activations are constrained at block boundaries.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework.config import fields
from framework.models import base, classifier, flops, layers
from framework.models import partitioning as pt
from projects.adatape import atr, tape_bank, tape_layers
from projects.adatape.settings import AdaTapeSettings

Array = jax.Array


class AdaTapeEncoder(layers.BlockFields, kw_only=True):
    """`tape_insert_layer` blocks on the tokens, ATR, the other blocks on [tokens ; tape].

    `num_layers` blocks in all, of the inherited widths (computing in `dtype`,
    rematerialised by `remat`); `settings` resolved. Returns (final tokens
    [B, L + T, D] in `dtype`, validity [B, L + T], the float32 `TapeReading`).
    """

    num_layers: int
    settings: AdaTapeSettings
    remat: str = "none"  # a `partitioning.REMAT_POLICIES` name

    @nn.compact
    def __call__(
        self, x: Array, bank: Array, *, train: bool, bank_valid: Array | None = None
    ) -> tuple[Array, Array, atr.TapeReading]:
        s = self.settings
        x = pt.constrain_tokens(x.astype(self.dtype))
        block = pt.remat(layers.EncoderBlock, self.remat)
        for i in range(s.tape_insert_layer):
            x = block(**layers.block_kwargs(self), name=f"block_{i}")(x, train=train)

        query = atr.QUERY_SOURCES[s.query_source](x)
        reading = atr.AdaptiveTapeReading(settings=s, name="atr")(
            query, bank, train=train, bank_valid=bank_valid
        )
        tape = pt.constrain_tokens(reading.tape.astype(self.dtype))
        if s.tape_mlp_dim:
            tape = tape_layers.TapeGLU(s.tape_mlp_dim, dtype=self.dtype, name="tape_mlp")(tape)
        tape = tape * reading.valid[..., None].astype(tape.dtype)

        base.sow_aux_loss(self, "ponder", s.ponder_weight * reading.ponder)
        base.sow_aux_metric(self, "ponder_cost", reading.ponder)
        base.sow_aux_histogram(self, "tape_length", reading.length.astype(jnp.float32))

        x = pt.constrain_tokens(jnp.concatenate([x, tape.astype(x.dtype)], axis=1))
        valid = jnp.concatenate(
            [jnp.ones(x.shape[:1] + (x.shape[1] - tape.shape[1],), bool), reading.valid], axis=1
        )
        x = tape_layers.TapeBlocks(
            self.num_layers - s.tape_insert_layer,
            **layers.block_kwargs(self),
            remat=self.remat,
            num_tape=s.max_tape_tokens,
            first_index=s.tape_insert_layer,
            separate_tape_ffn=s.separate_tape_ffn,
            name="tape_blocks",
        )(x, valid, train=train)
        return x, valid, reading


def encoder_flops(
    encoder_params: Any, settings: AdaTapeSettings, tokens: int, bank_entries: int
) -> float:
    """Forward FLOPs per example of an `AdaTapeEncoder` on `tokens` input tokens reading
    from a bank of `bank_entries` (see `BaseModel.analytical_flops`).

    As compiled: ATR's `max_tape_tokens` reads (each scores every entry on `key_dim`
    features and sums `num_candidates` entries), the tape MLP and the blocks after
    insertion at the padded tape length, whatever the tape lengths read. (XLA's cost
    analysis counts the body of ATR's `lax.scan` once, not `max_tape_tokens` times: with
    a large learned bank its count falls below this one.)
    """
    s = settings
    tape = s.max_tape_tokens
    total = 0.0
    for i in range(s.tape_insert_layer):
        total += flops.self_attention_encoder(encoder_params[f"block_{i}"], tokens)
    width = encoder_params["atr"]["norm"]["scale"].shape[-1]
    per_read = flops.dense(bank_entries, s.key_dim) + flops.dense(s.num_candidates, width)
    total += tape * per_read
    if s.tape_mlp_dim:
        total += flops.dense(flops.kernel_params(encoder_params["tape_mlp"]), tape)
    blocks = encoder_params["tape_blocks"]
    if not s.separate_tape_ffn:
        return total + flops.self_attention_encoder(blocks, tokens + tape)
    for block in blocks.values():
        if "self_attention" not in block:  # the final norm
            continue
        total += flops.self_attention_encoder(block["self_attention"], tokens + tape)
        total += flops.dense(flops.kernel_params(block["mlp"]), tokens)
        total += flops.dense(flops.kernel_params(block["tape_mlp"]), tape)
    return total


def bank_flops(params: Any, entries: int) -> float:
    """The tape bank's kernels (an input bank's patch embedding and projection, or a
    symbol bank's projection) at each of its `entries`; a learned bank costs nothing."""
    return flops.dense(flops.kernel_params(params.get("tape_bank", {})), entries)


class TapeEncoding:
    """The encode step of AdaTape's classifier modules: the tape bank, then the AdaTape
    encoder from `encoder`; returns (tokens, validity).

    A mixin for a `classifier.ClassifierSkeleton` with a field `settings`
    (`AdaTapeSettings`). The bank is the module's 'tape_bank': `input_bank(inputs)` for
    bank_type 'input', else learned entries.
    """

    def input_bank(self, inputs: Array) -> Array:
        """The `input` bank made from the inputs: a submodule named 'tape_bank'."""
        raise NotImplementedError

    def input_bank_valid(self, inputs: Array) -> Array | None:
        """[B, N] False where an `input` bank entry is padding; None: every entry is real."""
        del inputs
        return None

    def encode(self, x: Array, inputs: Array, *, train: bool) -> tuple[Array, Array]:
        s = self.settings
        bank_valid = None
        if s.bank_type == "input":
            bank = self.input_bank(inputs)
            bank_valid = self.input_bank_valid(inputs)
        else:
            bank = tape_bank.LearnedTapeBank(s.bank_size, x.shape[-1], name="tape_bank")()
        x, valid, _ = self.encoder(name="encoder")(x, bank, train=train, bank_valid=bank_valid)
        return x, valid


def adatape_encoder(
    num_layers: int,
    num_heads: int,
    mlp_dim: int,
    settings: AdaTapeSettings,
    config: ml_collections.ConfigDict,
) -> classifier.EncoderFactory:
    """An `AdaTapeEncoder` factory, dropout rates, compute dtype and remat policy from
    `config`."""
    factory = classifier.encoder_factory(AdaTapeEncoder, num_heads, mlp_dim, config=config)
    return functools.partial(factory, num_layers=num_layers, settings=settings)


class AdaTapeClassifier(base.ClassificationModel):
    """Base of AdaTape's classifiers: the tape fields of `config.model` (declared by
    `AdaTapeSettings`, with the model's own `tape_defaults`) and the settings built
    from them."""

    progress_metrics = ("loss", "accuracy", "tape_length")
    tape_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        fields.declare(config, AdaTapeSettings, **cls.tape_defaults)
        return config

    @staticmethod
    def tape_settings(
        config: ml_collections.ConfigDict, *, hidden_size: int, num_heads: int, num_layers: int
    ) -> AdaTapeSettings:
        """The checked settings from `config.model`, resolved for a model of these sizes."""
        return fields.build(AdaTapeSettings, config).resolved(
            hidden_size=hidden_size, num_heads=num_heads, num_layers=num_layers
        )
