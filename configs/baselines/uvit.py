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

from framework import configs

_TRAIN_EXAMPLES = 1_281_167


def get_config(arg: str | None = None):
    arg = arg or "S/16"
    if arg not in ("S/16", "smoke"):
        raise ValueError(f"unknown preset {arg!r}; known: S/16, smoke")
    c = configs.base_config(model_name="uvit", dataset_name="random_images")
    c.experiment_name = f"imagenet_uvit_{arg.replace('/', '')}"
    c.dataset.image_size = 224
    c.dataset.num_classes = 1000
    c.dataset.num_eval_examples = 50_000

    c.model.variant = "S/16" if arg == "S/16" else "nano/4"
    c.model.pooling = "token"
    c.model.dropout_rate = 0.0
    c.model.head_bias_init = -6.9
    c.model.loss = "sigmoid"
    c.model.max_steps = 12
    c.model.halting = "example"
    c.model.act_epsilon = 0.01
    c.model.halting_bias_init = -1.0
    c.model.ponder_weight = 0.01

    c.batch_size = 4096
    c.eval_batch_size = 4096
    c.num_train_steps = -(-300 * _TRAIN_EXAMPLES // 4096)
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 0.1
    c.optimizer.grad_clip_norm = 1.0
    c.lr.base = 1e-3
    c.lr.warmup_steps = 10_000
    c.log_every_steps = 100
    c.eval_every_steps = 5000
    c.checkpoint_every_steps = 2000

    if arg == "smoke":
        c.dataset.image_size = 32
        c.dataset.num_classes = 10
        c.dataset.num_eval_examples = 64
        c.dataset.class_signal = 0.5
        c.model.head_bias_init = -2.3
        c.model.max_steps = 4
        c.batch_size = 16
        c.eval_batch_size = 32
        c.num_train_steps = 20
        c.lr.warmup_steps = 5
        c.log_every_steps = 5
        c.eval_every_steps = 10
        c.checkpoint_every_steps = 10
    return c
