"""Side-by-side step timing with the trainer's own train step (framework/step_timing.py)."""

from __future__ import annotations

import glob
import gzip
import json

import numpy as np

from framework.config import loader
from framework.experiments import step_timing
from framework.train import trainer

VOCAB = 64


def tiny_t5(variant: str):
    """`configs/altup/t5.py` at T5-tiny size, one layer, on short random token rows."""
    config = loader.load_config(f"configs/altup/t5.py:tiny,{variant},data=random")
    config.model.num_layers = 1
    config.dataset.inputs_length = 16
    config.dataset.targets_length = 8
    config.dataset.vocab_size = VOCAB
    config.batch_size = 2
    config.eval_batch_size = 2
    return config


def test_bare_loop_steps_the_trainers_state(tmp_path):
    loop = step_timing.bare_loop(tiny_t5("dense"))
    assert int(loop.state.step) == 2  # the compile step and one warm-up step
    seconds = loop.run(3)
    assert seconds > 0 and int(loop.state.step) == 5
    # A profile of its steps names XLA's ops (by their HLO names).
    step_timing.trace_steps(loop, 2, str(tmp_path))
    (path,) = glob.glob(str(tmp_path / "plugins" / "profile" / "*" / "*.trace.json.gz"))
    events = json.load(gzip.open(path))["traceEvents"]
    assert any("fusion" in e.get("name", "") for e in events if e.get("ph") == "X")
    assert int(loop.state.step) == 5 + 1 + 2  # one untraced step, two traced
    # The trainer's state: running sums of every training metric, grad norm and rate.
    experiment = trainer.build_experiment(tiny_t5("dense"))
    assert set(loop.state.metric_sums) == set(experiment.abstract_state.metric_sums)
    assert {"loss", "accuracy", "grad_norm", "learning_rate"} <= set(loop.state.metric_sums)
    # Eight steps on a batch of 2 rows of 8 target tokens each: 128 counted tokens.
    np.testing.assert_allclose(np.asarray(loop.state.metric_sums["loss"])[1], 8 * 2 * 8)


def test_step_times_relative_to_the_reference():
    configs = {"altup": tiny_t5("altup,k=2"), "dense": tiny_t5("dense")}
    results = step_timing.interleaved_step_times(configs, steps=2, rounds=2, reference="dense")
    assert list(results) == ["altup", "dense"]
    assert results["dense"].relative == 1.0
    for r in results.values():
        assert r.seconds_per_step > 0 and len(r.rounds) == 2 and r.batch_size == 2
        assert r.seconds_per_step == float(np.median(r.rounds))
    per_round = np.asarray(results["altup"].rounds) / np.asarray(results["dense"].rounds)
    np.testing.assert_allclose(results["altup"].relative, np.median(per_round))
    # AltUp K=2 adds K^2 + K per layer (one per stack), the second embedding half, the
    # output projection's extra input rows and the final norm's extra width.
    extra = results["altup"].num_params - results["dense"].num_params
    assert extra == 6 * 2 + VOCAB * (2 * 64 + 1)
    table = step_timing.format_step_times(results, "dense")
    assert "step time vs dense" in table and "| altup |" in table
