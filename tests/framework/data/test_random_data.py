"""Generated stand-in datasets: batches as functions of (seed, step), padded eval splits."""

from __future__ import annotations

import numpy as np
import pytest

from framework.config import schema
from framework.data import pipeline, random_data
from framework.errors import ConfigError


def seq2seq(split: pipeline.HostSplit, **fields) -> random_data.RandomSeq2Seq:
    config = random_data.RandomSeq2Seq.default_config()
    config.update({"inputs_length": 6, "targets_length": 4, "vocab_size": 11, **fields})
    return random_data.RandomSeq2Seq(config, split, seed=3)


def test_seq2seq_rows_are_shifted_targets_in_the_vocabulary():
    batch = seq2seq(pipeline.HostSplit(5, 5)).example_batch()
    assert batch["encoder_input_tokens"].shape == (5, 6)
    assert batch["decoder_target_tokens"].shape == (5, 4)
    for key in ("encoder_input_tokens", "decoder_target_tokens"):
        assert batch[key].dtype == np.int32
        assert 1 <= batch[key].min() and batch[key].max() < 11  # no padding, no token 0
    np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 0], 0)
    np.testing.assert_array_equal(
        batch["decoder_input_tokens"][:, 1:], batch["decoder_target_tokens"][:, :-1]
    )
    np.testing.assert_array_equal(batch["mask"], np.ones(5, np.float32))
    # The shapes a compile uses, without making a batch, are the batch's.
    spec = seq2seq(pipeline.HostSplit(5, 5)).batch_spec()
    assert {k: (v.shape, v.dtype) for k, v in spec.items()} == {
        k: (v.shape, v.dtype) for k, v in batch.items()
    }


def test_train_batches_are_a_function_of_step_and_process():
    data = seq2seq(pipeline.HostSplit(4, 4))
    from_zero = data.train_batches(0)
    batches = [next(from_zero) for _ in range(3)]
    resumed = next(data.train_batches(2))
    for key in batches[2]:
        np.testing.assert_array_equal(resumed[key], batches[2][key])
    assert not np.array_equal(
        batches[0]["encoder_input_tokens"], batches[1]["encoder_input_tokens"]
    )
    # Two processes draw different halves of the global batch.
    halves = [
        next(seq2seq(pipeline.HostSplit(4, 4, i, 2)).train_batches(0))["encoder_input_tokens"]
        for i in range(2)
    ]
    assert halves[0].shape == (2, 6) and not np.array_equal(halves[0], halves[1])


def test_eval_split_is_covered_once_with_padding():
    data = seq2seq(pipeline.HostSplit(4, 4), num_eval_examples=5)
    masks = [batch["mask"] for batch in data.eval_batches()]
    assert [m.tolist() for m in masks] == [[1, 1, 1, 1], [1, 0, 0, 0]]
    assert data.meta == {"vocab_size": 11, "num_eval_examples": 5}


def test_images_keep_their_class_patterns():
    config = random_data.RandomImages.default_config()
    config.update(dict(image_size=8, num_classes=2, class_signal=1.0))
    data = random_data.RandomImages(config, pipeline.HostSplit(64, 64), seed=0)
    batch = data.example_batch()
    assert batch["inputs"].shape == (64, 8, 8, 3) and batch["label"].shape == (64,)
    # With the pattern added, images of one class share more than images of two.
    mean_0 = batch["inputs"][batch["label"] == 0].mean(0)
    mean_1 = batch["inputs"][batch["label"] == 1].mean(0)
    assert np.abs(mean_0 - mean_1).mean() > 0.2


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("vocab_size", 1, "dataset.vocab_size must be at least 2"),
        ("targets_length", 0, "dataset.targets_length must be positive"),
        ("num_eval_examples", 0, "dataset.num_eval_examples must be positive"),
    ],
)
def test_bad_fields_name_the_key(field, value, message):
    data = seq2seq(pipeline.HostSplit(2, 2), **{field: value})
    with pytest.raises(ConfigError, match=message):
        data.example_batch()


def test_registered_by_name():
    defaults = schema.dataset_class("random_seq2seq").default_config()
    assert defaults.vocab_size == 32128 and defaults.inputs_length == 512


def test_generated_data_has_one_eval_split():
    data = seq2seq(pipeline.HostSplit(4, 4), num_eval_examples=6)
    assert [b["mask"].sum() for b in data.eval_batches("eval")] == [4, 2]
    with pytest.raises(
        ConfigError, match=r"^eval split 'train': the random dataset .* known: eval$"
    ):
        data.eval_batches("train")
