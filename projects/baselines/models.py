"""Universal Transformer baselines with ACT: `ut_parity` (sequences) and `uvit` (images).

`ut_parity`: batch `inputs` [B, L, F] float (or [B, L] int with `vocab_size`),
`label` [B]. `uvit`: batch `inputs` [B, H, W, C], `label` [B]; built on the ViT stem
and head, with the shared block applied up to `max_steps` times (default: the
variant's depth). Both are the framework's classifiers with a UT encoder.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import ml_collections

from framework.config import fields, registry
from framework.models import base, classifier, flops, transformer, vit
from projects.baselines import universal
from projects.baselines.act import ACTSettings


def ut_encoder(
    num_heads: int, mlp_dim: int, settings: ACTSettings, config: ml_collections.ConfigDict
) -> classifier.EncoderFactory:
    """A Universal Transformer encoder with ACT, dropout rates from `config`."""
    factory = classifier.encoder_factory(
        universal.UniversalEncoder, num_heads, mlp_dim, config=config
    )
    return functools.partial(factory, settings=settings)


def universal_flops(encoder_params: Any, settings: ACTSettings, tokens: int) -> float:
    """A `UniversalEncoder` on `tokens` tokens: the shared block and the halting unit (a
    dot product per example, or per token) at every one of the `max_steps` steps, as
    compiled (the steps after the whole batch halts are skipped at run time only)."""
    block = flops.self_attention_encoder(encoder_params["shared_block"], tokens)
    width = encoder_params["act"]["halting_kernel"].shape[0]
    halting = flops.dense(width, tokens if settings.halting == "token" else 1)
    return settings.max_steps * (block + halting)


@registry.MODELS.register("ut_parity")
class UTParity(base.ClassificationModel):
    """Universal Transformer with ACT over a sequence (e.g. parity)."""

    progress_metrics = ("loss", "accuracy", "act_updates")

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        transformer.add_sequence_fields(config, num_layers=False)
        fields.declare(config, ACTSettings, max_steps=8)
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> ACTSettings:
        """Checks the fields (ConfigError naming the key); returns the ACT settings."""
        super().check_config(config)
        transformer.check_sequence_fields(config)
        return fields.build(ACTSettings, config).resolved()

    def build_module(self) -> nn.Module:
        c = self.config
        settings = self.check_config(c)
        return transformer.SequenceClassifierModule(
            num_classes=self.num_classes,
            hidden_size=c.hidden_size,
            vocab_size=c.vocab_size,
            encoder=ut_encoder(c.num_heads, c.mlp_dim, settings, c),
            **classifier.skeleton_kwargs(c),
        )

    def analytical_flops(self, params: Any, batch: base.Batch) -> float:
        """Embedding, `universal_flops`, the head on the pooled vector."""
        settings = self.check_config(self.config)
        stem, tokens = transformer.sequence_stem_flops(params, batch, self.config.pooling)
        encoder = universal_flops(params["encoder"], settings, tokens)
        return stem + encoder + flops.dense(flops.kernel_params(params["classifier"]), 1)


@registry.MODELS.register("uvit")
class UViT(vit.SettingsViTClassifier):
    """Universal ViT with ACT (`variant` sets widths; depth bounds `max_steps`, which
    defaults to the variant's depth)."""

    progress_metrics = ("loss", "accuracy", "act_updates")
    settings_class = ACTSettings

    def encoder(self, size: vit.ViTSize, settings: ACTSettings) -> classifier.EncoderFactory:
        return ut_encoder(size.num_heads, size.mlp_dim, settings, self.config)

    def encoder_flops(
        self, encoder_params: Any, size: vit.ViTSize, settings: ACTSettings, tokens: int
    ) -> float:
        return universal_flops(encoder_params, settings, tokens)
