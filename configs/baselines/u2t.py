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

from configs.baselines import uvit


def get_config(arg: str | None = None):
    c = uvit.get_config(arg)  # the same recipe, sizes and ACT fields
    c.experiment_name = c.experiment_name.replace("imagenet_uvit_", "imagenet_u2t_")
    c.model.halting = "token"
    return c
