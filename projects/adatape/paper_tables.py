"""The parity table: Transformer, Universal Transformer (ACT) and AdaTape at one budget.

All three train with the same steps, batch, optimizer and schedule; model sizes are
matched on parameter count (see each config's docstring). Presets:
- `tiny`: a few steps, one seed (tests the command end to end),
- `quick`: 3 seeds, a short budget, under 15 minutes on 2 CPU cores,
- `full`: 3 seeds at the configs' own budget (5000 steps of batch 64).
"""

from __future__ import annotations

from framework.config import loader, registry
from framework.experiments import run_budget, tables

CONFIGS = {
    "Transformer": "configs/parity/transformer.py",
    "Universal Transformer (ACT)": "configs/baselines/parity_ut.py",
    "AdaTape": "configs/adatape/parity.py",
}
PRESETS = {
    # preset: (config arg, seeds, train steps or 0 for the config's own, eval examples)
    "tiny": ("smoke", (0,), 20, 128),
    "quick": ("", (0, 1, 2), 1000, 2048),
    "full": ("", (0, 1, 2), 0, 8192),
}

NOTES = """
Parity (AdaTape release variant: 32 symbols in {1, 0, -1}, label = number of 1s mod 2),
accuracy on held-out sequences drawn from a separate random stream. Same steps, batch,
AdamW and schedule for every model; sizes matched on parameter count. FLOPs are XLA's
estimate of one example's forward pass (for ACT and ATR, the estimate counts every
possible step). Paper's claim (AdaTape paper and blog): the Transformer and the
Universal Transformer stay near chance (about 50%), AdaTape does clearly better.
"""


@registry.TABLES.register("parity")
def parity_table(preset: str) -> tables.Table:
    arg, seeds, steps, num_eval = tables.pick_preset("parity", PRESETS, preset)
    rows = []
    for name, path in CONFIGS.items():
        config = loader.load_config(f"{path}:{arg}" if arg else path)
        with config.unlocked():
            config.dataset.num_eval_examples = num_eval
            config.compute_flops = True
        if steps:
            config = run_budget.RunBudget(steps).apply(config)
        rows.append(tables.Row(name, config, seeds))
    columns = [
        tables.Column("eval.accuracy", "accuracy"),
        tables.Column("eval.tape_length", "tape length", "{:.2f}"),
        tables.Column("eval.act_updates", "ACT steps", "{:.2f}"),
        tables.Column("num_params", "parameters", "{:,.0f}", spread=False),
        tables.Column("flops_per_example", "forward FLOPs/example", "{:,.0f}", spread=False),
        tables.Column("train_examples_per_sec", "train examples/s", "{:,.0f}"),
    ]
    title = (
        f"Parity, {preset} preset ({len(seeds)} seed(s), {rows[0].config.num_train_steps} "
        f"steps of batch {rows[0].config.batch_size})"
    )
    return tables.Table(title, rows, columns, NOTES)
