"""T5.1.1 with an AltUp variant in both stacks, registered as `t5_altup`."""

from __future__ import annotations

from typing import Callable

import ml_collections

from framework.config import fields, registry
from framework.models import flops
from framework.models.t5.model import T5Model
from framework.models.t5.stack import StackAdapter
from projects.altup.adapters import AltUpSettings
from projects.altup.layers import sequence_plan


@registry.MODELS.register("t5_altup")
class T5AltUpModel(T5Model):
    """T5 whose encoder and decoder layers are wrapped by `model.altup.variant`.

    `variant='none'` is plain T5 (the dense baseline with the same config keys).
    """

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        config = super().default_config()
        config.altup = ml_collections.ConfigDict()
        fields.declare(config.altup, AltUpSettings)
        return config

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        super().check_config(config)
        fields.build(AltUpSettings, config.altup)  # checks itself

    def adapter(self) -> StackAdapter:
        return fields.build(AltUpSettings, self.config.altup).adapter()

    def layer_flops(
        self, stack: str, index: int, length: int, cost: Callable[[int], float]
    ) -> float:
        """AltUp / Recycled-AltUp: the layer on one d-wide block at every position, plus
        predict (a K x K mixing of the blocks: 2 K^2 d per position) and correct (K
        scaled adds: 2 K d). Sequence-AltUp: the layer on the positions
        `sequence_plan` computes (its per-distance scalars are elementwise, not
        counted). Dense (`none`, also `width=W`): every position."""
        del stack
        s = fields.build(AltUpSettings, self.config.altup)
        if s.variant in ("altup", "recycled"):
            mixing = flops.dense(s.k * s.k + s.k, self.dims().d_model * length)
            return cost(length) + mixing
        if s.variant == "sequence":
            return cost(len(sequence_plan(length, index, s.sequence_stride)["computed"]))
        return cost(length)
