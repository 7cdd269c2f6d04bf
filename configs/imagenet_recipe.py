"""AdaTape's released ImageNet-1k training recipe, shared by the image configs.

224 px; train: inception crop, flip, RandAugment(2, 15), values in [-1, 1], one-hot
labels, mixup (alpha 0.5); eval: shorter side 256, central 224 crop. AdamW (0.9,
0.999), weight decay 0.1, global-norm clip 1.0, batch 4096, 300 epochs, lr 1e-3 with
10k linear warm-up then cosine decay, dropout 0, class token, head bias init -6.9
(= log 1/1000) with sigmoid cross-entropy. Data: tfds `imagenet2012` (prepare it with
`python -m launch.prepare_data imagenet2012 --manual_dir=DIR`), read by the
`tfds_images` builder; train on `train`, evaluate on `validation` (top-1 and top-5).

Every image config takes the same preset arguments:
- `VARIANT` (e.g. `S/16`): the recipe as released.
- `VARIANT,runlocal`: the same config (data set, ops, model kind) shrunk to run on a
  CPU in seconds: 32 px crops, a `nano` model of the same kind, batch 8, 4 steps
  (Scenic's `runlocal`). The tests run it on tfds' mock ImageNet.
- `VARIANT,data=random`: the full model and recipe on generated 224 px images with 1000
  classes (`random_images`), for step timing without data.
- `smoke`: a tiny model on 32 px generated images (`random_images`), needing no data.
"""

from __future__ import annotations

import ml_collections

from framework.config import args, schema

TRAIN_EXAMPLES = 1_281_167
NUM_CLASSES = 1000
RUNLOCAL_IMAGE_SIZE = 32


def pp_train(image_size: int, num_classes: int, randaug: str = "randaug(2, 15)") -> str:
    """The released train preprocessing as a `dataset.pp_train` string."""
    ops = ["decode", f"inception_crop({image_size})", "flip_lr", randaug]
    ops += ["value_range(-1, 1)", f"onehot({num_classes})"]
    return "|".join(op for op in ops if op)


def pp_eval(image_size: int) -> str:
    """Resize the shorter side to 8/7 of the crop, then a central crop."""
    return (
        f"decode|resize_small({image_size * 8 // 7})|central_crop({image_size})|value_range(-1, 1)"
    )


def parse_arg(arg: str | None, variants: tuple[str, ...], default: str) -> tuple[str, str]:
    """`VARIANT[,runlocal|,data=random]` or `smoke` -> (variant or 'smoke', mode), the
    mode being full | runlocal | random | smoke (the shared `:arg` grammar)."""
    spec = args.parse_arg(
        arg,
        choices={"variant": (*variants, "smoke"), "data": ("random",)},
        variant=default,
        runlocal=False,
        data="",
    )
    if spec.runlocal and spec.data:
        raise ValueError(f"config arg {arg!r}: runlocal and data=random exclude each other")
    if spec.variant == "smoke":
        if spec.runlocal or spec.data:
            raise ValueError(f"config arg {arg!r}: smoke takes no runlocal or data=")
        return "smoke", "smoke"
    mode = "runlocal" if spec.runlocal else "random" if spec.data else "full"
    return spec.variant, mode


def base_config(model_name: str, mode: str) -> ml_collections.ConfigDict:
    """`schema.base_config` on the recipe's data set, with the recipe applied."""
    dataset_name = "random_images" if mode in ("smoke", "random") else "tfds_images"
    c = schema.base_config(model_name=model_name, dataset_name=dataset_name)
    apply(c, mode)
    return c


def apply(c: ml_collections.ConfigDict, mode: str = "full") -> None:
    """Sets the recipe's data, head, optimizer, schedule and cadence fields on `c`."""
    if mode == "smoke":
        c.dataset.image_size = 32
        c.dataset.num_classes = 10
        c.dataset.num_eval_examples = 64
        c.dataset.class_signal = 0.5
    elif mode == "random":
        c.dataset.image_size = 224
        c.dataset.num_classes = NUM_CLASSES
    else:
        size = 224 if mode == "full" else RUNLOCAL_IMAGE_SIZE
        c.dataset.tfds_name = "imagenet2012"
        c.dataset.train_split = "train"
        c.dataset.eval_split = "validation"
        c.dataset.pp_train = pp_train(size, NUM_CLASSES)
        c.dataset.pp_eval = pp_eval(size)
        c.dataset.mixup.mixup_alpha = 0.5
        c.dataset.num_workers = 0 if mode == "runlocal" else 8  # decode processes per host
        c.dataset.num_threads = 8 if mode == "runlocal" else 2  # reader threads per process
    c.model.pooling = "token"
    c.model.dropout_rate = 0.0
    c.model.head_bias_init = -6.9
    c.model.loss = "sigmoid"
    c.batch_size = 4096
    c.eval_batch_size = 4096
    c.num_train_steps = -(-300 * TRAIN_EXAMPLES // 4096)  # 300 epochs: 93,836 steps
    c.optimizer.name = "adamw"
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.weight_decay = 0.1
    c.optimizer.grad_clip_norm = 1.0
    c.lr.factors = "constant*linear_warmup*cosine_decay"
    c.lr.base = 1e-3
    c.lr.warmup_steps = 10_000
    c.log_every_steps = 100
    c.eval_every_steps = 5000
    c.checkpoint_every_steps = 2000
    if mode == "smoke":
        c.model.head_bias_init = -2.3  # log 1/10
    if mode in ("runlocal", "smoke"):
        c.batch_size = 16 if mode == "smoke" else 8
        c.eval_batch_size = 32 if mode == "smoke" else 8
        c.num_train_steps = 20 if mode == "smoke" else 4
        c.lr.warmup_steps = 5 if mode == "smoke" else 2
        c.log_every_steps = 5 if mode == "smoke" else 2
        c.eval_every_steps = 10 if mode == "smoke" else 4
        c.checkpoint_every_steps = 10 if mode == "smoke" else 4


def full_size(mode: str) -> bool:
    """Whether `mode` runs the model at its released size (full and random data)."""
    return mode in ("full", "random")


def small_variant(mode: str, variant: str, small: str = "nano/4") -> str:
    """The model variant: as named at full size, `small` for runlocal and smoke."""
    return variant if full_size(mode) else small
