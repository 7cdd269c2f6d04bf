"""Fashion-MNIST from scratch at one budget: the rows of the `images` table.

`:MODEL` picks the model; every model trains with the same steps, batch, optimizer,
schedule and augmentation, and is evaluated on the 10k test images:
- `vit`: ViT, 64 wide, 4 blocks, 4 heads, MLP 256, 7x7 patches (16 tokens) + class token;
- `adatape_input`: that ViT with AdaTape, input-driven bank of 4x4 patches (49
  entries, finer than the stem, as the release's 8x8 bank beside 16x16 tokens), tape
  read after block 1, up to 5 tape tokens of 5 candidates, threshold 2;
- `adatape_learn`: the same with a learnable bank of 256 entries;
- `uvit`: the ViT block shared over up to 4 steps under per-example ACT;
- `u2t`: the same with per-token ACT;
- `avit`: the ViT with A-ViT's per-token halting (beta 5, so that tokens can halt
  early at this depth; prior centred at block index 3 of 4).

Data: `python -m launch.prepare_data fashion_mnist` (from Debian's
dataset-fashion-mnist package). Augmentation: random left-right flip; values in
[-1, 1]. AdamW (0.9, 0.999), weight decay 0.05, clip 1.0, lr 1e-3 with linear warm-up
and cosine decay, batch 128, 3000 steps (6.4 epochs).

`:MODEL,tiny` is a few steps of a 2-block, 32-wide model of the same kind, for tests.
  python -m launch.train --config=configs/images/fashion_mnist.py:vit --workdir=/tmp/fm
"""

from __future__ import annotations

import ml_collections

from framework.config import args, schema

MODELS = ("vit", "adatape_input", "adatape_learn", "uvit", "u2t", "avit")
_MODEL_NAMES = {
    "vit": "vit_classifier",
    "adatape_input": "adatape_vit",
    "adatape_learn": "adatape_vit",
    "uvit": "uvit",
    "u2t": "uvit",
    "avit": "avit",
}
VARIANT, DEPTH = "micro/7", 4  # 64 wide, 4 blocks, 4 heads, MLP 256; 7x7 patches


def _adatape(c: ml_collections.ConfigDict, bank_type: str) -> None:
    c.model.bank_type = bank_type
    c.model.bank_patch_size = 4  # 7 x 7 = 49 entries at 28 px
    c.model.bank_size = 256
    c.model.tape_insert_layer = 1
    c.model.max_tape_tokens = 5
    c.model.num_candidates = 5
    c.model.halting_threshold = 2.0
    c.model.query_source = "gap"
    c.model.ponder_weight = 0.01


def _act(c: ml_collections.ConfigDict, halting: str) -> None:
    c.model.max_steps = DEPTH
    c.model.halting = halting
    c.model.act_epsilon = 0.01
    c.model.halting_bias_init = -1.0
    c.model.ponder_weight = 0.01


def _avit(c: ml_collections.ConfigDict) -> None:
    c.model.halting_gamma = 10.0
    c.model.halting_beta = 5.0
    c.model.act_epsilon = 0.01
    c.model.ponder_weight = 5e-4
    c.model.distr_prior_weight = 1e-3
    c.model.prior_mean = None  # round(2/3 * 4) = 3


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    spec = args.parse_arg(arg, choices={"model": MODELS}, model="vit", tiny=False)
    model = spec.model
    c = schema.base_config(_MODEL_NAMES[model], "tfds_images")
    c.experiment_name = f"fashion_mnist_{model}"
    c.dataset.tfds_name = "fashion_mnist"
    c.dataset.train_split = "train"
    c.dataset.eval_split = "test"
    c.dataset.pp_train = "decode(channels=1)|flip_lr|value_range(-1, 1)"
    c.dataset.pp_eval = "decode(channels=1)|value_range(-1, 1)"
    c.dataset.num_threads = 2

    c.model.variant = VARIANT
    c.model.pooling = "token"
    if model.startswith("adatape"):
        _adatape(c, "input" if model == "adatape_input" else "learn")
    elif model in ("uvit", "u2t"):
        _act(c, "example" if model == "uvit" else "token")
    elif model == "avit":
        _avit(c)

    c.optimizer.name = "adamw"
    c.optimizer.b1, c.optimizer.b2 = 0.9, 0.999
    c.optimizer.weight_decay = 0.05
    c.optimizer.grad_clip_norm = 1.0
    c.lr.factors = "constant*linear_warmup*cosine_decay"
    c.lr.base = 1e-3
    c.lr.warmup_steps = 200
    c.batch_size = 128
    c.eval_batch_size = 500
    c.num_train_steps = 3000
    c.log_every_steps = 100
    c.eval_every_steps = 0  # at the end
    c.checkpoint_every_steps = 1000
    if spec.tiny:  # a 2-block, 32-wide model of each kind: compiles in seconds
        c.model.variant = "nano/7"
        if model in ("uvit", "u2t"):
            c.model.max_steps = 2
        c.batch_size, c.eval_batch_size = 16, 50
        c.num_train_steps, c.lr.warmup_steps = 6, 2
        c.log_every_steps, c.checkpoint_every_steps = 3, 6
    return c


def get_hyper(hyper):
    """The learning rate of the chosen model (`:vit` by default), 4 points.

    python -m launch.sweep --config=configs/images/fashion_mnist.py:vit \
        --workdir=runs/fmnist_lr_sweep
    """
    return hyper.sweep("config.lr.base", [3e-4, 1e-3, 3e-3, 1e-2])
