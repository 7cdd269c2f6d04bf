"""Batch assembly: padding with 0, decoder inputs shifted right, packed segments."""

from __future__ import annotations

import numpy as np
import pytest

from framework.data.text import features


def ex(inputs, targets):
    return np.array(inputs, np.int32), np.array(targets, np.int32)


def test_unpacked_batch():
    batch = features.make_batch([[ex([5, 6, 1], [9, 7, 1])], [ex([4, 1], [8, 1])]], 4, 3)
    assert sorted(batch) == [
        "decoder_input_tokens",
        "decoder_target_tokens",
        "encoder_input_tokens",
        "mask",
    ]
    np.testing.assert_array_equal(batch["encoder_input_tokens"], [[5, 6, 1, 0], [4, 1, 0, 0]])
    np.testing.assert_array_equal(batch["decoder_target_tokens"], [[9, 7, 1], [8, 1, 0]])
    np.testing.assert_array_equal(batch["decoder_input_tokens"], [[0, 9, 7], [0, 8, 1]])
    np.testing.assert_array_equal(batch["mask"], [1, 1])
    assert all(v.dtype == np.int32 for k, v in batch.items() if k != "mask")
    assert batch["mask"].dtype == np.float32


def test_packed_batch_restarts_segments():
    batch = features.make_batch([[ex([5, 1], [9, 1]), ex([6, 7, 1], [8, 1])]], 6, 5, packed=True)
    np.testing.assert_array_equal(batch["encoder_input_tokens"], [[5, 1, 6, 7, 1, 0]])
    np.testing.assert_array_equal(batch["encoder_segment_ids"], [[1, 1, 2, 2, 2, 0]])
    np.testing.assert_array_equal(batch["encoder_positions"], [[0, 1, 0, 1, 2, 0]])
    np.testing.assert_array_equal(batch["decoder_target_tokens"], [[9, 1, 8, 1, 0]])
    np.testing.assert_array_equal(batch["decoder_input_tokens"], [[0, 9, 0, 8, 0]])
    np.testing.assert_array_equal(batch["decoder_segment_ids"], [[1, 1, 2, 2, 0]])


def test_empty_and_overflow():
    empty = features.make_batch([], 4, 3)
    assert empty["encoder_input_tokens"].shape == (0, 4) and empty["mask"].shape == (0,)
    with pytest.raises(ValueError):
        features.make_batch([[ex([1] * 5, [1])]], 4, 3)
    with pytest.raises(ValueError):
        features.make_batch([[ex([1], [1]), ex([1], [1])]], 4, 3, packed=False)
