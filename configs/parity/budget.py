"""The parity task and training budget shared by every parity model's config.

Data: the AdaTape release variant (32 symbols in {1, 0, -1}). Budget: 5000 steps of
batch 64, AdamW lr 1e-3 with 200 warm-up steps then cosine decay, weight decay 1e-4,
global-norm clip 1.0. The `smoke` preset is a CPU minute (60 steps of batch 32).
Each model config sets its model fields (`transformer_size`: the Transformer's size).
"""

import ml_collections

from framework.config import args, schema


def parse_arg(arg: str | None) -> ml_collections.ConfigDict:
    """`smoke` or nothing (the shared `:arg` grammar)."""
    return args.parse_arg(arg, smoke=False)


def base(
    model_name: str, experiment_name: str, spec: ml_collections.ConfigDict
) -> ml_collections.ConfigDict:
    """A parity config for `model_name` with the shared data and budget."""
    c = schema.base_config(model_name=model_name, dataset_name="parity")
    c.experiment_name = experiment_name
    c.dataset.variant = "release"
    c.dataset.length = 32
    c.batch_size = 64
    c.num_train_steps = 5000
    c.lr.base = 1e-3
    c.lr.warmup_steps = 200
    c.optimizer.weight_decay = 1e-4
    c.optimizer.grad_clip_norm = 1.0
    c.log_every_steps = 100
    c.eval_every_steps = 1000
    c.checkpoint_every_steps = 1000
    if spec.smoke:
        c.batch_size = 32
        c.eval_batch_size = 64
        c.dataset.num_eval_examples = 200
        c.num_train_steps = 60
        c.lr.warmup_steps = 10
        c.log_every_steps = 10
        c.eval_every_steps = 30
        c.checkpoint_every_steps = 30
    return c


def transformer_size(c: ml_collections.ConfigDict, spec: ml_collections.ConfigDict) -> None:
    """The parity Transformer's size: 64 wide, 2 layers, 4 heads, MLP 256 (smoke: 32
    wide, 1 layer, MLP 64)."""
    c.model.hidden_size = 64
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.mlp_dim = 256
    if spec.smoke:
        c.model.hidden_size = 32
        c.model.num_layers = 1
        c.model.mlp_dim = 64
