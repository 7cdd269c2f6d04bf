"""`config.init_from`: fine-tuning starts from another run's parameters, nothing else."""

import os

import jax
import numpy as np
import pytest

from framework.errors import ConfigError
from framework.train import checkpoints, trainer
from framework.train import experiment as experiment_lib
from tests.framework.train.test_trainer import read_metrics, restore_params, tiny_config


def test_init_from_loads_parameters_only_and_names_mismatches(tmp_path):
    pretrain = str(tmp_path / "pretrain")
    trainer.train_and_evaluate(tiny_config(num_train_steps=4), pretrain)
    saved = restore_params(pretrain, 4)
    directory = os.path.join(pretrain, "checkpoints")
    for path in (pretrain, directory, os.path.join(directory, "4"), os.path.relpath(pretrain)):
        assert checkpoints._find_checkpoint(path)[:2] == (directory, [4])

    # lr 0: the fine-tuning step leaves the loaded parameters as they are, so the run ends
    # with the pre-trained parameters, after a step count that starts at 0.
    finetune = str(tmp_path / "finetune")
    overrides = {"lr.base": 0.0, "lr.warmup_steps": 0}
    config = tiny_config(num_train_steps=1, init_from=pretrain, seed=7, **overrides)
    result = trainer.train_and_evaluate(config, finetune)
    assert result.step == 1
    jax.tree.map(np.testing.assert_array_equal, result.params, saved)
    assert [r["step"] for r in read_metrics(finetune) if r["split"] == "train"] == [1]
    # ... which are not what seed 7 initialises.
    fresh = experiment_lib.build_experiment(tiny_config(seed=7)).init_state().params
    fc1 = lambda params: params["encoder"]["block_0"]["mlp"]["fc1"]["kernel"]  # noqa: E731
    assert not np.allclose(fc1(fresh), fc1(saved))

    wider = tiny_config(init_from=pretrain, **{"model.mlp_dim": 32})
    with pytest.raises(ConfigError, match=r"does not fit the config's model: '.*mlp.*' has shape"):
        trainer.train_and_evaluate(wider, str(tmp_path / "wider"))
    with pytest.raises(ConfigError, match="config.init_from=.*: no such workdir or checkpoint"):
        trainer.train_and_evaluate(tiny_config(init_from=str(tmp_path / "no")), str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        trainer.train_and_evaluate(tiny_config(init_from=str(tmp_path)), str(tmp_path / "y"))
