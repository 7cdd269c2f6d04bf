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

from configs.parity import budget


def get_config(arg: str | None = None):
    spec = budget.parse_arg(arg)
    c = budget.base("ut_parity", "parity_ut", spec)
    c.model.hidden_size = 88
    c.model.num_heads = 4
    c.model.mlp_dim = 352
    c.model.pooling = "gap"
    c.model.max_steps = 8
    c.model.halting = "example"
    c.model.act_epsilon = 0.01
    c.model.halting_bias_init = -1.0
    c.model.ponder_weight = 0.01
    if spec.smoke:
        c.model.hidden_size = 32
        c.model.mlp_dim = 64
        c.model.max_steps = 3
    return c
