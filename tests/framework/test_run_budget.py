"""Run budgets: one rule for the steps, schedule and cadence of shortened runs."""

from __future__ import annotations

import pytest

from configs.parity import transformer
from framework.errors import ConfigError
from framework.experiments.run_budget import RunBudget


def test_fitted_budget_rescales_schedule_and_cadence():
    config = transformer.get_config()  # 5000 steps, warm-up 200, log every 100
    short = RunBudget(1000).apply(config)
    assert short.num_train_steps == 1000
    assert short.lr.warmup_steps == 100  # at most a tenth of the run
    assert short.lr.decay_steps == 0  # decays over the run's own 1000 steps
    assert short.eval_every_steps == 0  # evaluates only at the end
    assert short.checkpoint_every_steps == 500
    assert short.log_every_steps == 100
    tiny = RunBudget(20, evals=2, checkpoints=4, logs=10).apply(config)
    assert (tiny.lr.warmup_steps, tiny.eval_every_steps) == (2, 10)
    assert (tiny.checkpoint_every_steps, tiny.log_every_steps) == (5, 2)
    # The original is untouched.
    assert config.num_train_steps == 5000 and config.lr.warmup_steps == 200


def test_explicit_warmup_and_kept_schedule():
    config = transformer.get_config()
    assert RunBudget(6, warmup_steps=1000).apply(config).lr.warmup_steps == 1000
    kept = RunBudget(150, keep_schedule=True, checkpoints=None, logs=None).apply(config)
    assert kept.num_train_steps == 150
    assert (kept.lr.warmup_steps, kept.lr.decay_steps) == (200, 5000)  # the full run's
    assert (kept.checkpoint_every_steps, kept.log_every_steps) == (1000, 100)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "at least one step"),
        ({"steps": 10, "evals": 0}, "budget evals must be positive"),
        ({"steps": 10, "checkpoints": -1}, "budget checkpoints must be positive"),
    ],
)
def test_bad_budgets_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RunBudget(**kwargs)
