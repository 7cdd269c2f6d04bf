"""UViT-S/16 (Universal ViT with ACT) on ImageNet-sized images, AdaTape's recipe.

The same training recipe as `configs/adatape/imagenet.py` (AdamW, weight decay 0.1,
clip 1.0, batch 4096, 300 epochs, lr 1e-3, 10k warm-up then cosine, head bias -6.9 with
sigmoid cross-entropy). One S-sized block (384 wide, 6 heads, MLP 1536) shared over up
to 12 steps, per-example halting, threshold 1 - 0.01, halting bias init -1 (Scenic's
UViT), ponder weight 0.01.

The dataset is the `random_images` stand-in (224 px, 1000 classes) until the ImageNet
pipeline lands; see `configs/adatape/imagenet.py`.

Presets: `:S/16` (default); `:smoke` is a tiny model on 32 px random images.
  python -m launch.train --config=configs/baselines/uvit.py:smoke --workdir=/tmp/v
"""

from configs import imagenet_recipe
from framework import config_schema


def get_config(arg: str | None = None):
    arg = arg or "S/16"
    if arg not in ("S/16", "smoke"):
        raise ValueError(f"unknown preset {arg!r}; known: S/16, smoke")
    c = config_schema.base_config(model_name="uvit", dataset_name="random_images")
    c.experiment_name = f"imagenet_uvit_{arg.replace('/', '')}"
    imagenet_recipe.apply(c, smoke=arg == "smoke")
    c.model.variant = "S/16" if arg == "S/16" else "nano/4"
    c.model.max_steps = 12 if arg == "S/16" else 4
    c.model.halting = "example"
    c.model.act_epsilon = 0.01
    c.model.halting_bias_init = -1.0
    c.model.ponder_weight = 0.01
    return c
