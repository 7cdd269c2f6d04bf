"""Universal Transformer with ACT on parity (AdaTape release variant: 32 symbols).

Same budget as `configs/parity/transformer.py` (steps, batch, optimizer, lr schedule).
Sizes: parameter counts match (98k vs 103k): one shared block 88 wide (4 heads, MLP
352) against the Transformer's two 64-wide blocks. ACT: per-example halting, up to 8
steps, threshold 1 - 0.01, halting bias init -1, ponder weight 0.01; at most 8 steps of
the wider block, so up to about 7x the Transformer's FLOPs.

Measured on CPU (seed 0, default preset): eval accuracy 0.497, at chance; the ponder
loss makes ACT halt after one step (N = 1, R = 1).

Presets: `:smoke` (a CPU minute; one 32-wide block, as the Transformer's smoke preset,
up to 3 steps), default (a real CPU run).
  python -m launch.train --config=configs/baselines/parity_ut.py:smoke --workdir=/tmp/u
"""

from framework import configs


def get_config(arg: str | None = None):
    c = configs.base_config(model_name="ut_parity", dataset_name="parity")
    c.experiment_name = "parity_ut"
    c.dataset.variant = "release"
    c.dataset.length = 32
    c.model.hidden_size = 88
    c.model.num_heads = 4
    c.model.mlp_dim = 352
    c.model.pooling = "gap"
    c.model.max_steps = 8
    c.model.halting = "example"
    c.model.act_epsilon = 0.01
    c.model.halting_bias_init = -1.0
    c.model.ponder_weight = 0.01
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
        c.model.mlp_dim = 64
        c.model.max_steps = 3
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
