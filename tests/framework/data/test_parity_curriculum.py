"""The parity length curriculum: active lengths, padding and labels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from framework.data import parity, pipeline
from framework.errors import ConfigError


def make(**fields) -> parity.Parity:
    config = parity.Parity.default_config()
    config.update(dict(length=16, num_eval_examples=64, **fields))
    return parity.Parity(config, pipeline.HostSplit(32, 32, 0, 1), seed=3)


def test_active_length_grows_from_the_start_length_to_the_full_length():
    data = make(curriculum_steps=10, curriculum_start_length=4)
    lengths = [data.active_length(step) for step in range(13)]
    assert lengths[0] == 4 and lengths[10:] == [16, 16, 16]
    assert lengths == sorted(lengths)
    assert lengths[5] == 4 + 6  # ceil(12 * 5 / 10)
    assert make().active_length(0) == 16  # no curriculum: the full length from step 0


def test_padding_is_zero_and_labels_count_only_active_ones():
    data = make(curriculum_steps=10, curriculum_start_length=4)
    plain = make()
    for step, (batch, full) in enumerate(
        itertools.islice(zip(data.train_batches(0), plain.train_batches(0)), 11)
    ):
        active = data.active_length(step)
        inputs = batch["inputs"]
        assert np.all(inputs[:, active:] == 0)
        np.testing.assert_array_equal(inputs[:, :active], full["inputs"][:, :active])
        ones = (full["inputs"][:, :active].argmax(-1) == 2).sum(1)  # one-hot index 2: +1
        np.testing.assert_array_equal(batch["label"], ones % 2)
        if active == 16:
            np.testing.assert_array_equal(batch["label"], full["label"])
    # Resuming mid-curriculum gives the same batches; evaluation is always full length.
    resumed = next(data.train_batches(7))
    np.testing.assert_array_equal(resumed["inputs"], list(itertools.islice(
        data.train_batches(0), 8))[-1]["inputs"])  # fmt: skip
    for batch in data.eval_batches():
        assert np.all(batch["inputs"][batch["mask"] > 0].sum(-1) == 1)


def test_parity_has_one_eval_split():
    data = make()
    default = list(data.eval_batches())
    named = list(data.eval_batches("eval"))
    assert len(default) == len(named) == 2
    for a, b in zip(default, named):
        np.testing.assert_array_equal(a["inputs"], b["inputs"])
    with pytest.raises(ConfigError) as error:
        data.eval_batches(split="test")
    assert (
        str(error.value) == "eval split 'test': the parity dataset has no such split; known: eval"
    )
