"""The parity ablation table: one change per row, and its per-seed columns."""

from __future__ import annotations

import pytest

from framework.config import loader
from framework.errors import ConfigError
from framework.experiments import run_budget, tables
from framework.train import run_record
from projects.adatape import parity_ablation


def flat(config) -> dict:
    out = {}

    def walk(prefix, node):
        for key, value in node.items():
            if hasattr(value, "items"):
                walk(f"{prefix}{key}.", value)
            else:
                out[f"{prefix}{key}"] = value

    walk("", config.to_dict())
    return out


def test_every_row_is_the_baseline_with_exactly_its_change():
    table = parity_ablation.parity_ablation_table("quick")
    assert len(table.rows) == len(parity_ablation.CHANGES)
    baseline = flat(table.rows[0].config)
    assert baseline["num_train_steps"] == 1000
    for row, change in zip(table.rows, parity_ablation.CHANGES):
        config = flat(row.config)
        expected = {key: value for key, value in change.overrides.items()}
        differs = {k for k in config if config[k] != baseline[k]}
        if change.steps_factor != 1:  # the budget's derived keys move with the steps
            differs -= {"num_train_steps", "lr.warmup_steps", "eval_every_steps",
                        "checkpoint_every_steps", "log_every_steps"}  # fmt: skip
        assert differs == set(expected), row.name
        for key, value in expected.items():
            assert config[key] == value
        assert config["num_train_steps"] == 1000 * change.steps_factor
        assert row.seeds == (0, 1, 2)
    assert len({row.slug for row in table.rows}) == len(table.rows)
    for key, value in parity_ablation.BASELINE.items():
        assert baseline[key] == value
    # The last row is the parity config's own default at the same budget.
    default = loader.load_config(parity_ablation.CONFIG)
    default.dataset.num_eval_examples = 2048
    default = run_budget.RunBudget(1000).apply(default)
    assert flat(table.rows[-1].config) == flat(default)
    assert flat(table.rows[0].config) != flat(default)
    with pytest.raises(ConfigError, match="unknown preset 'full' for parity_ablation"):
        parity_ablation.parity_ablation_table("full")


def test_per_seed_columns_count_the_solved_seeds(tmp_path):
    table = parity_ablation.parity_ablation_table("quick")
    table.rows = table.rows[:2]
    accuracies = {table.rows[0].name: (0.5, 0.97, 0.95), table.rows[1].name: (0.94, 0.5, 0.99)}
    for row in table.rows:
        for seed, accuracy in zip(row.seeds, accuracies[row.name]):
            record = run_record.make("done", step=1, num_train_steps=1, evaluation={
                "accuracy": accuracy})  # fmt: skip
            run_record.write(tables.run_dir(str(tmp_path), row, seed), record)
    extra = parity_ablation.per_seed_extra(table, str(tmp_path))
    assert extra[table.rows[0].name] == {
        "solved_seeds": 2.0, "accuracy_seed_0": 0.5, "accuracy_seed_1": 0.97,
        "accuracy_seed_2": 0.95,
    }  # fmt: skip
    assert extra[table.rows[1].name]["solved_seeds"] == 1.0
