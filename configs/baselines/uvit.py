"""UViT-S/16 (Universal ViT with ACT) on ImageNet-sized images, AdaTape's recipe.

The same training recipe as `configs/adatape/imagenet.py` (AdamW, weight decay 0.1,
clip 1.0, batch 4096, 300 epochs, lr 1e-3, 10k warm-up then cosine, head bias -6.9 with
sigmoid cross-entropy). One S-sized block (384 wide, 6 heads, MLP 1536) shared over up
to 12 steps, per-example halting, threshold 1 - 0.01, halting bias init -1 (Scenic's
UViT), ponder weight 0.01.

Data: tfds `imagenet2012` with the released augmentation (`configs/imagenet_recipe.py`).

Presets: `:S/16` (default); `:S/16,runlocal` shrinks the run for a CPU; `:smoke` is a
tiny model on 32 px generated images.
  python -m launch.train --config=configs/baselines/uvit.py:smoke --workdir=/tmp/v
"""

from configs import imagenet_recipe


def get_config(arg: str | None = None):
    variant, mode = imagenet_recipe.parse_arg(arg, ("S/16",), "S/16")
    c = imagenet_recipe.base_config("uvit", mode)
    c.experiment_name = f"imagenet_uvit_{variant.replace('/', '')}"
    c.model.variant = imagenet_recipe.small_variant(mode, variant)
    c.model.max_steps = 12 if imagenet_recipe.full_size(mode) else 4
    c.model.halting = "example"
    c.model.act_epsilon = 0.01
    c.model.halting_bias_init = -1.0
    c.model.ponder_weight = 0.01
    return c
