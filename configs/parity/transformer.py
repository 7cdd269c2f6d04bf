"""Plain Transformer encoder on parity (AdaTape release variant: 32 symbols in {1,0,-1}).

64 wide, 2 layers, 4 heads, MLP 256 (103k parameters); data and budget from
`configs/parity/budget.py`. Presets: `:smoke` (a CPU minute), default (a real CPU run).
  python -m launch.train --config=configs/parity/transformer.py:smoke --workdir=/tmp/p
"""

from configs.parity import budget


def get_config(arg: str | None = None):
    spec = budget.parse_arg(arg)
    c = budget.base("transformer_classifier", "parity_transformer", spec)
    budget.transformer_size(c, spec)
    return c
