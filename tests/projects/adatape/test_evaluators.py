"""AdaTape's `tape_selection` evaluator: per-entry read counts, in a run's eval row."""

import jax
import numpy as np
import pytest

from configs.adatape import parity as adatape_parity
from configs.parity import transformer as parity_transformer
from framework.config import schema
from framework.data import pipeline
from framework.errors import ConfigError
from framework.models import base
from framework.train import evaluators, trainer
from framework.train import experiment as experiment_lib
from projects.adatape import atr
from tests.framework.train.test_trainer import read_metrics


def small_config(base_config):
    c = base_config
    c.num_train_steps = 6
    c.log_every_steps = 3
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 6
    c.compute_flops = False
    c.lr.warmup_steps = 2
    c.async_checkpointing = False
    c.dataset.num_eval_examples = 40
    c.eval_batch_size = 16
    return c


def reference_counts(experiment, params):
    """Reads per bank entry counted on the host from ATR's captured `used` mask."""
    model = experiment.model

    @jax.jit
    def used_entries(params, batch):
        _, state = model.module.apply(
            {"params": params},
            **model.module_inputs(batch),
            train=False,
            capture_intermediates=lambda module, _: isinstance(module, atr.AdaptiveTapeReading),
            mutable=["intermediates", *base.AUX_COLLECTIONS],
        )
        leaves = jax.tree.leaves(
            state["intermediates"], is_leaf=lambda x: isinstance(x, atr.TapeReading)
        )
        return leaves[0].used

    counts, examples = 0, 0
    for batch in experiment.dataset.eval_batches():
        real = batch["mask"] > 0
        used = np.asarray(used_entries(params, pipeline.shard_batch(batch, experiment.mesh)))
        counts = counts + used[real].sum(0)
        examples += int(real.sum())
    return counts, examples


def test_tape_selection_counts_and_writes_its_metrics(tmp_path):
    c = small_config(adatape_parity.get_config("smoke"))
    schema.add_eval(c, "selection", "tape_selection")
    result = trainer.train_and_evaluate(c, str(tmp_path))

    experiment = experiment_lib.build_experiment(c)
    selection = evaluators.from_config(experiment, str(tmp_path))[1]
    assert selection.name == "selection" and selection.prefix == ""
    counts, examples = selection.counts(result.params)
    expected, expected_examples = reference_counts(experiment, result.params)
    assert examples == expected_examples == 40  # padding rows of the last batch left out
    np.testing.assert_array_equal(counts, expected)
    assert counts.shape == (c.dataset.length,) and counts.max() <= 40

    row = [r for r in read_metrics(tmp_path) if r["split"] == "eval"][-1]
    assert row["step"] == 6 and "accuracy" in row  # beside the default metrics
    assert row["bank_reads_per_example"] == pytest.approx(counts.sum() / 40)
    # Each read takes num_candidates entries (a repeat only once all are read).
    reads = row["tape_length"] * c.model.num_candidates
    assert row["bank_reads_per_example"] <= reads + 1e-6


def test_tape_selection_needs_a_model_with_atr():
    c = small_config(parity_transformer.get_config("smoke"))
    schema.add_eval(c, "selection", "tape_selection")
    experiment = experiment_lib.build_experiment(c)
    with pytest.raises(ConfigError, match=r"^config\.evals\.selection\.type='tape_selection' "):
        evaluators.from_config(experiment, "/unused")
