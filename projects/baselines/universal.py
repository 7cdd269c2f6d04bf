"""Universal Transformer encoder with ACT.

One pre-LN encoder block shared over depth, applied under `AdaptiveComputationTime`,
then a final LayerNorm. Sows the ponder loss `ponder_weight * (N + R)` (aux loss
`ponder`), the ponder cost and the update count N (aux metrics), per example.

The block computes in `dtype` (float32 parameters, norms and softmax); ACT's halting
quantities are float32 whatever `dtype` is. `remat` rematerialises the shared block:
it stays one module (one parameter set), recomputed in the backward pass of each step.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from framework.models import base, layers
from framework.models import partitioning as pt
from projects.baselines import act

Array = jax.Array


class UniversalEncoder(layers.BlockFields, kw_only=True):
    """The shared block (of the inherited widths) under ACT, then LayerNorm;
    [B, L, D] -> [B, L, D]. `settings` resolved."""

    settings: act.ACTSettings
    remat: str = "none"  # a `partitioning.REMAT_POLICIES` name, for the shared block

    @nn.compact
    def __call__(self, x: Array, valid: Array | None = None, *, train: bool) -> Array:
        block_cls = pt.remat(layers.EncoderBlock, self.remat)
        block = block_cls(**layers.block_kwargs(self), name="shared_block")
        s = self.settings
        x = pt.constrain_tokens(x.astype(self.dtype))
        result = act.AdaptiveComputationTime(layer=block, settings=s, name="act")(
            x, valid, train=train
        )
        base.sow_aux_loss(self, "ponder", s.ponder_weight * result.ponder)
        base.sow_aux_metric(self, "ponder_cost", result.ponder)
        base.sow_aux_metric(self, "act_updates", result.mean_updates)
        return pt.layer_norm(dtype=self.dtype, name="ln_final")(result.output)
