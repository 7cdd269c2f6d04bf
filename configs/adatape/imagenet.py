"""AdaTape-ViT on ImageNet-1k from scratch, the released recipe; `:S/16`, `:B/32`, `:B/16`.

Recipe (release): 224 px, AdamW (0.9, 0.999), weight decay 0.1, global-norm clip 1.0,
batch 4096, 300 epochs, lr 1e-3 with 10k linear warm-up then cosine decay, dropout 0,
head bias init -6.9 (= log 1/1000, so the loss is sigmoid cross-entropy). Tape:
input-driven bank of 8x8 patches (784 entries), inserted after block 1, up to 10 tape
tokens of 5 candidates, threshold 2, ponder weight 0.01.

The dataset is a stand-in for now: `random_images` at 224 px with 1000 classes, so the
model builds, steps and can be timed. The real ImageNet pipeline (inception crop, flip,
RandAugment(2, 15), values in [-1, 1], mixup 0.5) comes with the `imagenet2012`
builder; this file will then switch `dataset_name` and set those fields.

Presets: `:S/16` (default), `:B/32`, `:B/16`; `:smoke` is a tiny model on 32 px
random images for a CPU check.
  python -m launch.train --config=configs/adatape/imagenet.py:smoke --workdir=/tmp/i
"""

from configs import imagenet_recipe
from framework import config_schema

_VARIANTS = ("S/16", "B/32", "B/16")


def get_config(arg: str | None = None):
    arg = arg or "S/16"
    if arg not in _VARIANTS + ("smoke",):
        raise ValueError(f"unknown preset {arg!r}; known: {', '.join(_VARIANTS)}, smoke")
    c = config_schema.base_config(model_name="adatape_vit", dataset_name="random_images")
    c.experiment_name = f"imagenet_adatape_{arg.replace('/', '')}"
    imagenet_recipe.apply(c, smoke=arg == "smoke")
    c.model.variant = arg if arg != "smoke" else "nano/4"
    c.model.attention_dropout_rate = 0.0
    c.model.bank_type = "input"
    c.model.bank_patch_size = 8 if arg != "smoke" else 2  # 784 entries at 224 px, 256 at 32
    c.model.tape_insert_layer = 1
    c.model.max_tape_tokens = 10
    c.model.num_candidates = 5
    c.model.halting_threshold = 2.0
    c.model.query_source = "gap"
    c.model.query_update = "average"
    c.model.ponder_weight = 0.01
    return c
