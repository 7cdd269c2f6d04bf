"""Plain Transformer encoder on parity (AdaTape release variant: 32 symbols in {1,0,-1}).

Presets: `:smoke` (a CPU minute), default (a real CPU run).
  python -m launch.train --config=configs/parity/transformer.py:smoke --workdir=/tmp/p
"""

from framework import configs


def get_config(arg: str | None = None):
    c = configs.base_config(model_name="transformer_classifier", dataset_name="parity")
    c.experiment_name = "parity_transformer"
    c.dataset.variant = "release"
    c.dataset.length = 32
    c.model.hidden_size = 64
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.mlp_dim = 256
    c.batch_size = 64
    c.num_train_steps = 5000
    c.lr.base = 1e-3
    c.lr.warmup_steps = 200
    c.optimizer.weight_decay = 1e-4
    c.optimizer.grad_clip_norm = 1.0
    c.log_every_steps = 100
    c.eval_every_steps = 1000
    c.checkpoint_every_steps = 1000
    if arg == "smoke":
        c.model.hidden_size = 32
        c.model.num_layers = 1
        c.model.mlp_dim = 64
        c.batch_size = 32
        c.eval_batch_size = 64
        c.dataset.num_eval_examples = 200
        c.num_train_steps = 60
        c.lr.warmup_steps = 10
        c.log_every_steps = 10
        c.eval_every_steps = 30
        c.checkpoint_every_steps = 30
    elif arg:
        raise ValueError(f"unknown preset {arg!r}; known: smoke")
    return c
