"""Plain ViT on ImageNet-sized images with AdaTape's recipe (the ViT baseline).

`:S/16` (default), `:B/32`, `:B/16`, `:Ti/16`; `:smoke` is a tiny ViT on 32 px images.
  python -m launch.train --config=configs/baselines/vit.py:smoke --workdir=/tmp/vit
"""

from configs import imagenet_recipe
from framework import config_schema

_VARIANTS = ("Ti/16", "S/16", "B/32", "B/16")


def get_config(arg: str | None = None):
    arg = arg or "S/16"
    if arg not in _VARIANTS + ("smoke",):
        raise ValueError(f"unknown preset {arg!r}; known: {', '.join(_VARIANTS)}, smoke")
    c = config_schema.base_config(model_name="vit_classifier", dataset_name="random_images")
    c.experiment_name = f"imagenet_vit_{arg.replace('/', '')}"
    imagenet_recipe.apply(c, smoke=arg == "smoke")
    c.model.variant = arg if arg != "smoke" else "nano/4"
    return c
