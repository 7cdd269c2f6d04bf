"""The parity ablation: AdaTape on parity with one change per row, 3 seeds each.

  python -m launch.reproduce parity_ablation --preset=quick|tiny --workdir=DIR

Why does AdaTape solve parity on some seeds and stay at chance on others? Every row is
the baseline, `configs/adatape/parity.py` with a randomly initialised symbol bank and
no query noise (`BASELINE`: the config before this ablation), at the parity table's
budget with exactly one change (a config override, or a longer budget), so the rows
test one hypothesis each; the last row is the config's current default. Columns:
held-out accuracy (mean ± std), the seeds that reach 95%, each seed's accuracy, the
mean tape length. The `quick` preset is the parity table's quick budget (1000 steps of
batch 64, 2048 held-out sequences).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from framework.config import loader, registry
from framework.experiments import run_budget, tables
from framework.train import run_record

CONFIG = "configs/adatape/parity.py"
SOLVED = 0.95  # held-out accuracy that counts as solving parity
# What the rows change from: the parity config with the bank and noise it had before
# this ablation chose its current defaults (the last row).
BASELINE = {"model.bank_init": "lecun_normal", "model.query_noise_std": 0.0}


@dataclasses.dataclass(frozen=True)
class Change:
    """One ablation row: config overrides (flattened keys) and a budget multiplier."""

    name: str
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps_factor: int = 1


CHANGES = (
    Change("baseline: random bank init, no query noise"),
    Change("bank with learned positions", {"model.bank_position": "learned"}),
    Change(
        "query noise 0.5 once on the raw query (release)",
        {"model.query_noise_std": 0.5, "model.query_noise": "release"},
    ),
    Change("query noise 0.5 fresh per read", {"model.query_noise_std": 0.5}),
    Change("bank-entry masking 0.1", {"model.bank_mask_rate": 0.1}),
    Change("candidates per read T // threshold = 5 (release)", {"model.num_candidates": 0}),
    Change("2 candidates per read", {"model.num_candidates": 2}),
    Change("threshold 3.4 (up to 10 reads of 3)", {"model.halting_threshold": 3.4}),
    Change("learning rate 3e-4", {"lr.base": 3e-4}),
    Change("learning rate 3e-3", {"lr.base": 3e-3}),
    Change("no learning-rate warm-up", {"lr.warmup_steps": 0}),
    Change("4x the training steps", steps_factor=4),
    Change(
        "query noise 1.0 once on the raw query (release)",
        {"model.query_noise_std": 1.0, "model.query_noise": "release"},
    ),
    Change(
        "query noise 2.0 once on the raw query (release)",
        {"model.query_noise_std": 2.0, "model.query_noise": "release"},
    ),
    Change("no ponder loss", {"model.ponder_weight": 0.0}),
    Change("ACT / PonderNet parity data (1-32 nonzero +-1)", {"dataset.variant": "act"}),
    Change(
        "length curriculum 8 -> 32 over the first 40% of steps", {"dataset.curriculum_steps": 400}
    ),
    Change("bank projection zero-initialised", {"model.bank_init": "zeros"}),
    Change(
        "zero-initialised bank + query noise 0.5 (release)",
        {"model.bank_init": "zeros", "model.query_noise_std": 0.5, "model.query_noise": "release"},
    ),
    Change(
        "zero-initialised bank + query noise 0.5 per read (the config's default)",
        {"model.bank_init": "zeros", "model.query_noise_std": 0.5},
    ),
)

PRESETS = {
    # preset: (config arg, seeds, train steps, held-out examples)
    "tiny": ("smoke", (0,), 20, 128),
    "quick": ("", (0, 1, 2), 1000, 2048),
}


def row_config(change: Change, arg: str, steps: int, num_eval: int):
    """The parity config with `change` applied, at `steps` x its budget factor."""
    config = loader.load_config(f"{CONFIG}:{arg}" if arg else CONFIG)
    with config.unlocked():
        config.dataset.num_eval_examples = num_eval
        config.update_from_flattened_dict(BASELINE)
        config.update_from_flattened_dict(change.overrides)
    return run_budget.RunBudget(steps * change.steps_factor).apply(config)


def per_seed_extra(table: tables.Table, workdir: str) -> dict[str, dict[str, float]]:
    """Seeds at >= 95% and each seed's accuracy, from the rows' run records."""
    rows = {}
    for row in table.rows:
        accuracies = []
        for seed in row.seeds:
            record = run_record.read(tables.run_dir(workdir, row, seed))
            accuracies.append(record["eval"]["accuracy"])
        values = {"solved_seeds": float(sum(a >= SOLVED for a in accuracies))}
        values.update({f"accuracy_seed_{s}": a for s, a in zip(row.seeds, accuracies)})
        rows[row.name] = values
    return rows


@registry.TABLES.register("parity_ablation")
def parity_ablation_table(preset: str) -> tables.Table:
    arg, seeds, steps, num_eval = tables.pick_preset("parity_ablation", PRESETS, preset)
    rows = [
        tables.Row(change.name, row_config(change, arg, steps, num_eval), seeds)
        for change in CHANGES
    ]
    columns = [
        tables.Column("eval.accuracy", "accuracy"),
        tables.Column("solved_seeds", f"seeds >= {SOLVED:.0%}", "{:.0f}", spread=False),
        *(tables.Column(f"accuracy_seed_{s}", f"seed {s}", spread=False) for s in seeds),
        tables.Column("eval.tape_length", "tape length", "{:.2f}"),
    ]
    title = (
        f"Parity ablation, {preset} preset: AdaTape with one change per row "
        f"({len(seeds)} seed(s), {steps} steps of batch {rows[0].config.batch_size} "
        "unless the row says otherwise)"
    )
    return tables.Table(title, rows, columns, NOTES, extra=per_seed_extra)


NOTES = """
Every row is the baseline (`configs/adatape/parity.py` with a randomly initialised
symbol bank and no query noise) with one change; the last row is the config's current
default. Accuracy is on held-out sequences; a seed counts as solved at 95%.
"""
