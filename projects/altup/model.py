"""T5.1.1 with an AltUp variant in both stacks, registered as `t5_altup`."""

from __future__ import annotations

import ml_collections

from framework.config import fields, registry
from framework.models.t5.model import T5Model
from framework.models.t5.stack import StackAdapter
from projects.altup.adapters import AltUpSettings


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
