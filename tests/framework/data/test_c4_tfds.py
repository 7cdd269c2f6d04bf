"""The `span_corruption` dataset's tfds source (`c4/en`) on tfds mock data (offline)."""

from __future__ import annotations

import numpy as np
import pytest

from framework.data import pipeline
from framework.data.text.dataset import SpanCorruption

tfds = pytest.importorskip("tensorflow_datasets")


def make(corpus, seed=0, process=(0, 1), **overrides):
    config = SpanCorruption.default_config()
    config.update(
        source="tfds",
        tfds_name="c4/en:3.1.0",
        vocab_path=corpus["model"],
        inputs_length=32,
        targets_length=8,
        num_eval_examples=10,
        shuffle_buffer_size=50,
    )
    config.update(overrides)
    return SpanCorruption(config, pipeline.HostSplit(4, 4, *process), seed)


@pytest.fixture
def mock_c4():
    with tfds.testing.mock_data(num_examples=300):
        yield


def test_c4_train_and_eval_batches(corpus, mock_c4):
    ds = make(corpus)
    assert ds.meta["num_eval_examples"] == 10
    train = ds.train_batches(0)
    batches = [next(train) for _ in range(3)]
    for batch in batches:
        assert batch["encoder_input_tokens"].shape == (4, 32)
        assert batch["decoder_target_tokens"].shape == (4, 8)
        assert (batch["mask"] == 1).all()
        assert (batch["decoder_target_tokens"][:, 0] == ds.meta["vocab_size"] - 1).all()
    again = make(corpus).train_batches(0)
    for batch in batches:
        np.testing.assert_array_equal(
            next(again)["encoder_input_tokens"], batch["encoder_input_tokens"]
        )
    evals = list(ds.eval_batches())
    assert len(evals) == 3
    assert sum(b["mask"].sum() for b in evals) == 10
    assert evals[-1]["encoder_input_tokens"].shape == (4, 32)
    assert (evals[-1]["encoder_input_tokens"][2:] == 0).all()


def test_c4_host_split(corpus, mock_c4):
    """Each process reads its own share of train; eval is the same set on every process."""
    first, second = make(corpus, process=(0, 2)), make(corpus, process=(1, 2))
    assert next(first.train_batches(0))["encoder_input_tokens"].shape == (2, 32)
    whole = list(make(corpus).eval_batches())
    halves = zip(first.eval_batches(), second.eval_batches())
    for w, (a, b) in zip(whole, halves, strict=True):
        np.testing.assert_array_equal(
            w["encoder_input_tokens"],
            np.concatenate([a["encoder_input_tokens"], b["encoder_input_tokens"]]),
        )
