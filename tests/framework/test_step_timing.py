"""Side-by-side step timing with the trainer's own train step (step_timing.py): one timed
loop for train steps, eval steps and any call."""

from __future__ import annotations

import glob
import gzip
import json

import jax
import jax.numpy as jnp
import numpy as np

from framework.config import loader
from framework.data import pipeline
from framework.experiments import step_timing
from framework.train import checkpoints
from framework.train import experiment as experiment_lib

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


def test_timed_loop_compiles_warms_up_and_times_each_call():
    calls = []

    def call():
        calls.append(1)
        return jnp.full((2,), len(calls))

    loop = step_timing.timed_loop(call, batch_size=2, num_params=7)
    # The compile call (timed apart) and one warm-up call; neither is in `run`'s time.
    assert len(calls) == 2 and loop.compile_seconds > 0
    assert (loop.batch_size, loop.num_params) == (2, 7)
    np.testing.assert_array_equal(loop.output, [2, 2])
    seconds = loop.run(3)
    assert seconds > 0 and len(calls) == 5
    np.testing.assert_array_equal(loop.output, [5, 5])  # the latest call's output
    times = step_timing.interleaved_seconds({"a": loop, "b": loop}, steps=2, rounds=3)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3} and len(calls) == 17


def test_bare_loop_steps_the_trainers_state(tmp_path):
    loop = step_timing.bare_loop(tiny_t5("dense"))
    assert int(loop.output.step) == 2  # the compile step and one warm-up step
    assert loop.batch_size == 2 and loop.compile_seconds > 0
    seconds = loop.run(3)
    assert seconds > 0 and int(loop.output.step) == 5
    # A profile of its steps names XLA's ops (by their HLO names).
    step_timing.trace_steps(loop, 2, str(tmp_path))
    (path,) = glob.glob(str(tmp_path / "plugins" / "profile" / "*" / "*.trace.json.gz"))
    events = json.load(gzip.open(path))["traceEvents"]
    assert any("fusion" in e.get("name", "") for e in events if e.get("ph") == "X")
    assert int(loop.output.step) == 5 + 1 + 2  # one untraced step, two traced
    # The trainer's state: running sums of every training metric, grad norm and rate.
    experiment = experiment_lib.build_experiment(tiny_t5("dense"))
    assert set(loop.output.metric_sums) == set(experiment.abstract_state.metric_sums)
    assert {"loss", "accuracy", "grad_norm", "learning_rate"} <= set(loop.output.metric_sums)
    # Eight steps on a batch of 2 rows of 8 target tokens each: 128 counted tokens.
    np.testing.assert_allclose(np.asarray(loop.output.metric_sums["loss"])[1], 8 * 2 * 8)


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


def test_loops_of_a_trained_workdir_start_from_its_latest_checkpoint(tmp_path):
    """`bare_loop` / `bare_eval_loop` with a workdir: the state `restore_state` reads."""
    config = tiny_t5("dense")
    experiment = experiment_lib.build_experiment(config)
    state = experiment.init_state()
    saved = state.replace(params=jax.tree.map(lambda x: x + 1, state.params), step=state.step + 9)
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=2, asynchronous=False)
    ckpt.save(9, saved)
    ckpt.close()
    train = step_timing.bare_loop(config, str(tmp_path))
    assert int(train.output.step) == 9 + 2
    evaluate = step_timing.bare_eval_loop(config, str(tmp_path))
    assert evaluate.batch_size == 2 and evaluate.num_params == train.num_params
    # The eval step's outputs on the restored parameters, not the initial ones.
    step = experiment.jit_eval_step()
    batch = pipeline.shard_batch(experiment.dataset.example_eval_batch(), experiment.mesh)
    expected, initial = step(saved.params, batch), step(state.params, batch)
    jax.tree.map(np.testing.assert_allclose, evaluate.output, expected)
    pairs = zip(jax.tree.leaves(evaluate.output), jax.tree.leaves(initial))
    assert not all(np.allclose(a, b) for a, b in pairs)
