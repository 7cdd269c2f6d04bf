"""AdaTape on parity (AdaTape release variant: 32 symbols in {1, 0, -1}).

Same budget as `configs/parity/transformer.py` (steps, batch, optimizer, lr schedule).
Sizes: the same Transformer (64 wide, 2 layers, 4 heads, MLP 256), so parameter counts
match (107k vs 103k; AdaTape adds the input projection of the flattened sequence and
the bank projection, and drops the position embedding). FLOPs are lower: the
Transformer runs on 1 + at most 10 tape tokens instead of 32. ATR: threshold 2, 3
candidates per read (10 reads x 3 fit in the 32-entry bank), ponder weight 0.01; the
bank is the symbols' projection without position information, as released
(`--config.model.bank_position=learned` adds it).

The bank's projection starts at zero and training adds query noise 0.5 per read. With
a random bank and no noise, ATR reads symbols in an order of preference fixed by the
initialisation (equal symbols tie, so the preference gets no gradient) and parity is
solved only on seeds whose init happens to prefer the 1s (2 of seeds 0-5 at 5000
steps); with a zero bank every symbol starts equal and the noise varies the reading
order early in training, and 5 of seeds 0-5 reach 95% (the sixth 0.889). The README's
parity section and `python -m launch.reproduce parity_ablation` have the evidence.

Presets: `:smoke` (a CPU minute), default (a real CPU run).
  python -m launch.train --config=configs/adatape/parity.py:smoke --workdir=/tmp/a
"""

from configs.parity import budget


def get_config(arg: str | None = None):
    spec = budget.parse_arg(arg)
    c = budget.base("adatape_parity", "parity_adatape", spec)
    budget.transformer_size(c, spec)  # the Transformer's, smoke preset included
    c.model.pooling = "gap"
    c.model.bank_type = "input"
    c.model.bank_position = "none"
    c.model.tape_insert_layer = 0
    c.model.max_tape_tokens = 10
    c.model.num_candidates = 3
    c.model.halting_threshold = 2.0
    c.model.ponder_weight = 0.01
    c.model.bank_init = "zeros"
    c.model.query_noise_std = 0.5  # per read (model.query_noise='per_read'), training only
    return c


def get_hyper(hyper):
    """The halting threshold against the candidates per read (6 points).

    python -m launch.sweep --config=configs/adatape/parity.py --workdir=runs/parity_sweep \
        --config.num_train_steps=1000 --parallel=2
    """
    return hyper.product(
        [
            hyper.sweep("config.model.halting_threshold", [1.0, 2.0, 3.0]),
            hyper.sweep("config.model.num_candidates", [2, 3]),
        ]
    )
