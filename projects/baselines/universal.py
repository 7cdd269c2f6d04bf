"""Universal Transformer encoder with ACT, and its config fields.

One pre-LN encoder block shared over depth, applied under `AdaptiveComputationTime`,
then a final LayerNorm. Sows the ponder loss `ponder_weight * (N + R)` (aux loss
`ponder`), the ponder cost and the update count N (aux metrics), per example.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import ml_collections

from framework.models import base, layers
from framework.errors import ConfigError
from projects.baselines import act

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ACTSettings:
    """ACT fields resolved from `config.model`."""

    max_steps: int
    halting: str
    threshold: float
    halting_bias_init: float
    step_embedding: bool
    ponder_weight: float
    early_exit: bool


def add_act_fields(config: ml_collections.ConfigDict, max_steps: int | None) -> None:
    """Declares the ACT fields (max_steps None: the variant's depth, for UViT)."""
    if max_steps is None:
        config.max_steps = ml_collections.config_dict.placeholder(int)
    else:
        config.max_steps = max_steps
    config.halting = "example"  # example | token
    config.act_epsilon = 0.01  # halts once the halting sum reaches 1 - eps
    config.halting_bias_init = -1.0
    config.step_embedding = True  # learned embedding of the step, added before each step
    config.ponder_weight = 0.01
    config.act_early_exit = True  # skip the remaining steps once the whole batch halted


def act_settings(config: ml_collections.ConfigDict, default_steps: int) -> ACTSettings:
    c = config
    max_steps = c.max_steps if c.max_steps is not None else default_steps
    if max_steps < 1:
        raise ConfigError(f"model.max_steps must be positive, got {max_steps}")
    if c.halting not in act.HALTING_KINDS:
        raise ConfigError(f"model.halting must be one of {act.HALTING_KINDS}, got {c.halting!r}")
    if not 0 < c.act_epsilon < 1:
        raise ConfigError(f"model.act_epsilon must lie in (0, 1), got {c.act_epsilon}")
    return ACTSettings(
        max_steps=max_steps,
        halting=c.halting,
        threshold=1.0 - float(c.act_epsilon),
        halting_bias_init=float(c.halting_bias_init),
        step_embedding=bool(c.step_embedding),
        ponder_weight=float(c.ponder_weight),
        early_exit=bool(c.act_early_exit),
    )


class UniversalEncoder(nn.Module):
    """A shared encoder block under ACT, then LayerNorm; [B, L, D] -> [B, L, D]."""

    num_heads: int
    mlp_dim: int
    act: ACTSettings
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        block = layers.EncoderBlock(
            self.num_heads,
            self.mlp_dim,
            self.dropout_rate,
            self.attention_dropout_rate,
            name="shared_block",
        )
        s = self.act
        result = act.AdaptiveComputationTime(
            layer=block,
            max_steps=s.max_steps,
            halting=s.halting,
            threshold=s.threshold,
            halting_bias_init=s.halting_bias_init,
            step_embedding=s.step_embedding,
            early_exit=s.early_exit,
            name="act",
        )(x, valid, train=train)
        base.sow_aux_loss(self, "ponder", s.ponder_weight * result.ponder)
        base.sow_aux_metric(self, "ponder_cost", result.ponder)
        base.sow_aux_metric(self, "act_updates", result.mean_updates)
        return nn.LayerNorm(name="ln_final")(result.output)
