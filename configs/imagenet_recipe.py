"""AdaTape's released ImageNet-1k training recipe, shared by the image configs.

224 px, AdamW (0.9, 0.999), weight decay 0.1, global-norm clip 1.0, batch 4096,
300 epochs, lr 1e-3 with 10k linear warm-up then cosine decay, dropout 0, class token,
head bias init -6.9 (= log 1/1000) with sigmoid cross-entropy. The dataset is the
`random_images` stand-in (224 px, 1000 classes) until the ImageNet pipeline lands.
The `smoke` preset shrinks everything to 32 px random images for a CPU check.
"""

import ml_collections

TRAIN_EXAMPLES = 1_281_167


def apply(c: ml_collections.ConfigDict, smoke: bool = False) -> None:
    """Sets the recipe's data, head, optimizer, schedule and cadence fields on `c`."""
    c.dataset.image_size = 224
    c.dataset.num_classes = 1000
    c.dataset.num_eval_examples = 50_000
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
    if smoke:
        c.dataset.image_size = 32
        c.dataset.num_classes = 10
        c.dataset.num_eval_examples = 64
        c.dataset.class_signal = 0.5
        c.model.head_bias_init = -2.3  # log 1/10
        c.batch_size = 16
        c.eval_batch_size = 32
        c.num_train_steps = 20
        c.lr.warmup_steps = 5
        c.log_every_steps = 5
        c.eval_every_steps = 10
        c.checkpoint_every_steps = 10
