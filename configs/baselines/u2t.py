"""U2T-S/16 on ImageNet-1k with AdaTape's recipe: the Universal Transformer ViT with
per-token ACT.

U2T is taken to be UViT (`configs/baselines/uvit.py`) with the Universal Transformer's
original per-position halting: one S-sized ViT block (384 wide, 6 heads, MLP 1536)
shared over up to 12 steps, where every token has its own halting unit output
p = sigmoid(Dense(state)) and halts on its own (threshold 1 - 0.01, halting bias init -1,
as Scenic's UViT), its output the ACT-weighted sum of its states; ponder weight 0.01 on
the mean over tokens of N + R. UViT differs only in halting per example. As in
`projects/baselines/act.py`, a halted token is still computed (and attended to) by the
later steps; it only gets weight 0 in its output, and the steps stop once every token of
the batch has halted.

The same training recipe as `configs/baselines/uvit.py` (`configs/imagenet_recipe.py`).

Presets: `:S/16` (default); `:S/16,runlocal` shrinks the run for a CPU;
`:S/16,data=random` runs on generated 224 px images; `:smoke` is a tiny model on 32 px
generated images.
  python -m launch.train --config=configs/baselines/u2t.py:smoke --workdir=/tmp/u2t
"""

from configs import imagenet_recipe


def get_config(arg: str | None = None):
    variant, mode = imagenet_recipe.parse_arg(arg, ("S/16",), "S/16")
    c = imagenet_recipe.base_config("uvit", mode)
    c.experiment_name = f"imagenet_u2t_{variant.replace('/', '')}"
    c.model.variant = imagenet_recipe.small_variant(mode, variant)
    c.model.max_steps = 12 if imagenet_recipe.full_size(mode) else 4
    c.model.halting = "token"
    c.model.act_epsilon = 0.01
    c.model.halting_bias_init = -1.0
    c.model.ponder_weight = 0.01
    return c
