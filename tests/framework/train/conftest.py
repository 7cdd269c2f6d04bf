"""Fixtures shared by the trainer's tests."""

import pytest

from framework.train import trainer
from tests.framework.train.test_trainer import tiny_config


@pytest.fixture(scope="session")
def full_run(tmp_path_factory):
    """(result, workdir) of an uninterrupted `tiny_config()` run: 20 steps, checkpoints
    at 10 and 20, what an interrupted and resumed run must end as. Read it only; copy
    the workdir to change it."""
    workdir = tmp_path_factory.mktemp("full_run")
    return trainer.train_and_evaluate(tiny_config(), str(workdir)), workdir
