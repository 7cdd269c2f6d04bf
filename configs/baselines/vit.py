"""Plain ViT on ImageNet-1k with AdaTape's recipe (the ViT baseline).

Presets (see `configs/imagenet_recipe.py`): `:S/16` (default), `:B/32`, `:B/16`,
`:Ti/16`; `:VARIANT,runlocal` shrinks the run for a CPU; `:smoke` is a tiny ViT on
32 px generated images.
  python -m launch.train --config=configs/baselines/vit.py:smoke --workdir=/tmp/vit
"""

from configs import imagenet_recipe

_VARIANTS = ("S/16", "Ti/16", "B/32", "B/16")


def get_config(arg: str | None = None):
    variant, mode = imagenet_recipe.parse_arg(arg, _VARIANTS, "S/16")
    c = imagenet_recipe.base_config("vit_classifier", mode)
    c.experiment_name = f"imagenet_vit_{variant.replace('/', '')}"
    c.model.variant = imagenet_recipe.small_variant(mode, variant)
    return c
