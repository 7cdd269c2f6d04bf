"""Universal Transformer encoder with ACT.

One pre-LN encoder block shared over depth, applied under `AdaptiveComputationTime`,
then a final LayerNorm. Sows the ponder loss `ponder_weight * (N + R)` (aux loss
`ponder`), the ponder cost and the update count N (aux metrics), per example.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from framework.models import base, layers
from projects.baselines import act

Array = jax.Array


class UniversalEncoder(layers.BlockFields, kw_only=True):
    """The shared block (of the inherited widths) under ACT, then LayerNorm;
    [B, L, D] -> [B, L, D]. `settings` resolved."""

    settings: act.ACTSettings

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        block = layers.EncoderBlock(**layers.block_kwargs(self), name="shared_block")
        s = self.settings
        result = act.AdaptiveComputationTime(layer=block, settings=s, name="act")(
            x, valid, train=train
        )
        base.sow_aux_loss(self, "ponder", s.ponder_weight * result.ponder)
        base.sow_aux_metric(self, "ponder_cost", result.ponder)
        base.sow_aux_metric(self, "act_updates", result.mean_updates)
        return nn.LayerNorm(name="ln_final")(result.output)
