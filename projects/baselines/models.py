"""Universal Transformer baselines with ACT: `ut_parity` (sequences) and `uvit` (images).

`ut_parity`: batch `inputs` [B, L, F] float (or [B, L] int with `vocab_size`),
`label` [B]. `uvit`: batch `inputs` [B, H, W, C], `label` [B]; built on the ViT stem
and head, with the shared block applied up to `max_steps` times (default: the
variant's depth). Both are the framework's classifiers with a UT encoder.
"""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from framework import registry
from framework.models import base, classifier, transformer, vit
from projects.baselines import universal


def ut_encoder(
    num_heads: int, mlp_dim: int, act: universal.ACTSettings, config: ml_collections.ConfigDict
) -> classifier.EncoderFactory:
    """A Universal Transformer encoder with ACT, dropout rates from `config`."""
    return classifier.encoder_factory(
        universal.UniversalEncoder, num_heads, mlp_dim, act, config=config
    )


@registry.MODELS.register("ut_parity")
class UTParity(base.ClassificationModel):
    """Universal Transformer with ACT over a sequence (e.g. parity)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        transformer.add_sequence_fields(config, num_layers=False)
        universal.add_act_fields(config, max_steps=8)
        return config

    def build_module(self) -> nn.Module:
        c = self.config
        act = universal.act_settings(c, c.max_steps)
        return transformer.SequenceClassifierModule(
            num_classes=self.num_classes,
            hidden_size=c.hidden_size,
            vocab_size=c.vocab_size,
            encoder=ut_encoder(c.num_heads, c.mlp_dim, act, c),
            **classifier.skeleton_kwargs(c),
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
        size = vit.resolve_size(c)
        act = universal.act_settings(c, size.num_layers)
        return vit.ViTClassifierModule(
            num_classes=self.num_classes,
            size=size,
            encoder=ut_encoder(size.num_heads, size.mlp_dim, act, c),
            **classifier.skeleton_kwargs(c),
        )
