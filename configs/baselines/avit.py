"""A-ViT (adaptive tokens, Yin et al. 2022) on ImageNet-1k with AdaTape's recipe.

The same training recipe as `configs/baselines/vit.py` (`configs/imagenet_recipe.py`:
the released augmentation, AdamW, weight decay 0.1, clip 1.0, batch 4096, 300 epochs
from scratch, lr 1e-3, 10k warm-up then cosine, head bias -6.9 with sigmoid
cross-entropy), not the A-ViT paper's fine-tuning of DeiT. Halting as in the A-ViT
release: h = sigmoid(10 * t[..., 0] - beta) with beta 30 (Ti/16) or 75 (S/16), threshold
1 - 0.01, ponder weight 5e-4, Gaussian prior over the 12 blocks centred at block index 8
(0-based, std 1), weight 1e-3. See `projects/baselines/avit.py`.

Presets (see `configs/imagenet_recipe.py`): `:Ti/16`, `:S/16` (default);
`:VARIANT,runlocal` shrinks the run for a CPU; `:VARIANT,data=random` runs on generated
224 px images; `:smoke` is a tiny 4-block model on 32 px generated images. The small
presets (runlocal, smoke) use beta 5, so that tokens halt at different blocks from the
start, and the prior's default centre, round(2/3 * 4) = 3.
  python -m launch.train --config=configs/baselines/avit.py:smoke --workdir=/tmp/avit
"""

from configs import imagenet_recipe

_BETAS = {"S/16": 75.0, "Ti/16": 30.0}  # the release's gate_center per size


def get_config(arg: str | None = None):
    variant, mode = imagenet_recipe.parse_arg(arg, tuple(_BETAS), "S/16")
    c = imagenet_recipe.base_config("avit", mode)
    c.experiment_name = f"imagenet_avit_{variant.replace('/', '')}"
    c.model.variant = imagenet_recipe.small_variant(mode, variant)
    c.model.halting_gamma = 10.0
    c.model.act_epsilon = 0.01
    c.model.ponder_weight = 5e-4
    c.model.distr_prior_weight = 1e-3
    c.model.prior_std = 1.0
    if imagenet_recipe.full_size(mode):
        c.model.halting_beta = _BETAS[variant]
        c.model.prior_mean = 8.0
    else:
        c.model.num_layers = 4
        c.model.halting_beta = 5.0
        c.model.prior_mean = None  # round(2/3 * 4) = 3
    return c
