"""AdaTape-ViT on ImageNet-1k from scratch, the released recipe; `:S/16`, `:B/32`, `:B/16`.

Recipe (release): 224 px, AdamW (0.9, 0.999), weight decay 0.1, global-norm clip 1.0,
batch 4096, 300 epochs, lr 1e-3 with 10k linear warm-up then cosine decay, dropout 0,
head bias init -6.9 (= log 1/1000, so the loss is sigmoid cross-entropy). Tape:
input-driven bank of 8x8 patches (784 entries), inserted after block 1, up to 10 tape
tokens of 5 candidates, threshold 2, ponder weight 0.01.

Data: tfds `imagenet2012` through the `tfds_images` builder with the released
augmentation (inception crop, flip, RandAugment(2, 15), values in [-1, 1], mixup 0.5).

Presets (see `configs/imagenet_recipe.py`): `:S/16` (default), `:B/32`, `:B/16`;
`:VARIANT,runlocal` shrinks the run for a CPU; `:smoke` is a tiny model on 32 px
generated images.
  python -m launch.train --config=configs/adatape/imagenet.py:smoke --workdir=/tmp/i
"""

from configs import imagenet_recipe

_VARIANTS = ("S/16", "B/32", "B/16")


def get_config(arg: str | None = None):
    variant, mode = imagenet_recipe.parse_arg(arg, _VARIANTS, "S/16")
    c = imagenet_recipe.base_config("adatape_vit", mode)
    c.experiment_name = f"imagenet_adatape_{variant.replace('/', '')}"
    c.model.variant = imagenet_recipe.small_variant(mode, variant)
    c.model.attention_dropout_rate = 0.0
    c.model.bank_type = "input"
    c.model.bank_patch_size = (
        8 if imagenet_recipe.full_size(mode) else 2
    )  # 784 entries at 224 px, 256 at 32
    c.model.tape_insert_layer = 1
    c.model.max_tape_tokens = 10
    c.model.num_candidates = 5
    c.model.halting_threshold = 2.0
    c.model.query_source = "gap"
    c.model.query_update = "average"
    c.model.ponder_weight = 0.01
    return c
