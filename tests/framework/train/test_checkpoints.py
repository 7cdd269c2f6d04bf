"""`checkpoints.restore_state`: a run's state back from its workdir, by one step lookup
shared with `load_params`; a missing step or another model is one line."""

import jax
import numpy as np
import pytest

from framework.config import loader
from framework.errors import ConfigError
from framework.train import checkpoints
from framework.train import experiment as experiment_lib


def experiment(**overrides):
    return experiment_lib.build_experiment(
        loader.load_config("configs/parity/transformer.py:smoke", **overrides)
    )


def test_restore_state_reads_the_latest_or_a_given_step(tmp_path):
    exp = experiment()
    first = exp.init_state()
    later = first.replace(params=jax.tree.map(lambda x: x * 2 + 1, first.params), step=7)
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=3, asynchronous=False)
    ckpt.save(3, first)
    ckpt.save(7, later)
    ckpt.close()
    workdir = str(tmp_path)

    state, step = checkpoints.restore_state(workdir, exp.abstract_state)
    assert step == 7 and int(state.step) == 7
    jax.tree.map(np.testing.assert_array_equal, state.params, later.params)
    leaf = jax.tree.leaves(state.params)[0]
    assert leaf.sharding == jax.tree.leaves(exp.abstract_state.params)[0].sharding
    state, step = checkpoints.restore_state(workdir, exp.abstract_state, step=3)
    assert step == 3
    jax.tree.map(np.testing.assert_array_equal, state.params, first.params)
    # The checkpoints directory or one step's directory name the same checkpoints.
    directory = tmp_path / "checkpoints"
    assert checkpoints.restore_state(str(directory), exp.abstract_state)[1] == 7
    assert checkpoints.restore_state(str(directory / "3"), exp.abstract_state)[1] == 3
    # load_params reads the parameters through the same lookup (the latest step).
    params, step = checkpoints.load_params(workdir, exp.abstract_state.params)
    assert step == 7
    jax.tree.map(np.testing.assert_array_equal, params, later.params)

    with pytest.raises(ConfigError, match=r"^--checkpoint=5: .*checkpoints holds steps \[3, 7\]$"):
        checkpoints.restore_state(workdir, exp.abstract_state, step=5)
    wider = experiment(**{"model.hidden_size": 16}).abstract_state
    with pytest.raises(ConfigError, match=r"incompatible model: .* has shape .*; use its own$"):
        checkpoints.restore_state(workdir, wider, advice="use its own")
    with pytest.raises(ConfigError, match=r"^--workdir=.*nope: no such workdir or checkpoint$"):
        checkpoints.restore_state(str(tmp_path / "nope"), exp.abstract_state)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^--workdir=.*empty: holds no checkpoint"):
        checkpoints.restore_state(str(tmp_path / "empty"), exp.abstract_state)
