"""AdaTape on parity (AdaTape release variant: 32 symbols in {1, 0, -1}).

Same budget as `configs/parity/transformer.py` (steps, batch, optimizer, lr schedule).
Sizes: the same Transformer (64 wide, 2 layers, 4 heads, MLP 256), so parameter counts
match (107k vs 103k; AdaTape adds the input projection of the flattened sequence and
the bank projection, and drops the position embedding). FLOPs are lower: the
Transformer runs on 1 + at most 10 tape tokens instead of 32. ATR: threshold 2, 3
candidates per read (10 reads x 3 fit in the 32-entry bank), ponder weight 0.01; the
bank is the symbols' projection without position information, as released
(`--config.model.bank_position=learned` adds it).

Full table (`python -m launch.reproduce parity --preset=full`, 3 seeds, README): AdaTape
0.664 ± 0.232 (seeds 0.505 / 0.992 / 0.496, mean tape length 5.7), Transformer and UT
at chance. Seed 0 with learned bank positions stayed at chance too (0.502). A likely
cause of the seed dependence: without position information equal symbols have equal
bank tokens, so which symbol ATR prefers gets no gradient (top-k ties, uniform weights).

Presets: `:smoke` (a CPU minute), default (a real CPU run).
  python -m launch.train --config=configs/adatape/parity.py:smoke --workdir=/tmp/a
"""

from configs.parity import budget


def get_config(arg: str | None = None):
    c = budget.base("adatape_parity", "parity_adatape", arg)
    c.model.hidden_size = 64
    c.model.num_layers = 2
    c.model.num_heads = 4
    c.model.mlp_dim = 256
    c.model.pooling = "gap"
    c.model.bank_type = "input"
    c.model.bank_position = "none"
    c.model.tape_insert_layer = 0
    c.model.max_tape_tokens = 10
    c.model.num_candidates = 3
    c.model.halting_threshold = 2.0
    c.model.ponder_weight = 0.01
    if arg == "smoke":
        c.model.hidden_size = 32
        c.model.num_layers = 1
        c.model.mlp_dim = 64
    return c
