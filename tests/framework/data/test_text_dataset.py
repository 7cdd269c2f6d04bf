"""The `span_corruption` dataset on local text files: fields, padding, determinism, hosts."""

from __future__ import annotations

import numpy as np
import pytest

from framework.config import registry, schema
from framework.data import pipeline
from framework.data.text import span_corruption
from framework.data.text.dataset import SpanCorruption
from framework.data.text.vocabulary import Vocabulary
from framework.errors import ConfigError

FIELDS = ["decoder_input_tokens", "decoder_target_tokens", "encoder_input_tokens", "mask"]
PACKED_FIELDS = FIELDS + [
    "decoder_positions",
    "decoder_segment_ids",
    "encoder_positions",
    "encoder_segment_ids",
]


def make(corpus, batch=8, eval_batch=8, seed=0, process=(0, 1), **overrides):
    config = SpanCorruption.default_config()
    config.update(
        train_files=corpus["train"],
        eval_files=corpus["eval"],
        vocab_path=corpus["model"],
        inputs_length=64,
        targets_length=16,
        num_eval_examples=21,
    )
    config.update(overrides)
    split = pipeline.HostSplit(batch, eval_batch, *process)
    return SpanCorruption(config, split, seed)


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_same(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_registered_with_defaults():
    assert registry.DATASETS.get("span_corruption") is SpanCorruption
    defaults = schema.dataset_class("span_corruption").default_config()
    for key in (
        "source tfds_name data_dir train_files eval_files vocab_path inputs_length "
        "targets_length noise_density mean_noise_span_length num_eval_examples pack"
    ).split():
        assert key in defaults, key


def test_meta(corpus):
    ds = make(corpus)
    vocab = Vocabulary(corpus["model"])
    raw = span_corruption.raw_length(64, 16, 0.15, 3.0)
    assert ds.meta == {
        "vocab_size": vocab.num_pieces + 100,
        "num_eval_examples": 21,
        "inputs_length": 64,
        "targets_length": 16,
        "raw_length": raw,
        "examples_per_row": 1,
        "eos_id": 1,
        "pad_id": 0,
    }


def test_train_batches_fields_shapes_and_padding(corpus):
    ds = make(corpus)
    li, lt = span_corruption.corrupted_lengths(ds.raw_length, 0.15, 3.0)
    for batch in take(ds.train_batches(0), 3):
        assert sorted(batch) == FIELDS
        assert batch["encoder_input_tokens"].shape == (8, 64)
        assert batch["decoder_target_tokens"].shape == (8, 16)
        assert batch["decoder_input_tokens"].shape == (8, 16)
        assert batch["mask"].dtype == np.float32 and (batch["mask"] == 1).all()
        for name, length in (("encoder_input_tokens", li), ("decoder_target_tokens", lt)):
            tokens = batch[name]
            assert tokens.dtype == np.int32
            assert (tokens[:, length - 1] == 1).all() and (tokens[:, length:] == 0).all()
            assert (tokens[:, : length - 1] > 1).all()  # no padding or EOS inside
        np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 0], 0)
        np.testing.assert_array_equal(
            batch["decoder_input_tokens"][:, 1:], batch["decoder_target_tokens"][:, :-1]
        )
        assert (batch["encoder_input_tokens"] < ds.meta["vocab_size"]).all()


def test_train_batches_are_a_function_of_seed_and_step(corpus):
    steps = take(make(corpus).train_batches(0), 6)
    resumed = take(make(corpus).train_batches(4), 2)
    for a, b in zip(steps[4:], resumed):
        assert_same(a, b)
    other = next(make(corpus, seed=1).train_batches(4))
    assert not np.array_equal(other["encoder_input_tokens"], steps[4]["encoder_input_tokens"])
    assert not np.array_equal(steps[0]["encoder_input_tokens"], steps[1]["encoder_input_tokens"])


def test_train_covers_each_chunk_once_per_epoch(corpus):
    ds = make(corpus, batch=4)
    n = len(ds._train_chunks)
    seen = [ds.train_order.permutation(0)[e] for e in range(n)]
    assert sorted(seen) == list(range(n))
    batches = take(ds.train_batches(n // 4 - 1), 3)  # crosses into the second epoch
    assert all(b["encoder_input_tokens"].shape == (4, 64) for b in batches)


def test_eval_covers_the_held_out_set_once_padded(corpus):
    ds = make(corpus)
    batches = list(ds.eval_batches())
    assert len(batches) == 3
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.sum() == 21 and (masks[:21] == 1).all()
    last = batches[-1]
    assert sorted(last) == FIELDS and last["encoder_input_tokens"].shape == (8, 64)
    assert (last["encoder_input_tokens"][5:] == 0).all() and (last["mask"][5:] == 0).all()
    # The held-out set does not depend on the run's seed.
    for a, b in zip(batches, make(corpus, seed=5).eval_batches()):
        assert_same(a, b)


def test_eval_all_chunks(corpus):
    ds = make(corpus, num_eval_examples=0)
    n = ds.meta["num_eval_examples"]
    assert n > 21
    assert sum(b["mask"].sum() for b in ds.eval_batches()) == n


@pytest.mark.parametrize("which", ["train", "eval"])
def test_two_processes_together_equal_one(corpus, which):
    def batches(process):
        ds = make(corpus, process=process)
        return take(ds.train_batches(2), 2) if which == "train" else list(ds.eval_batches())

    whole, first, second = batches((0, 1)), batches((0, 2)), batches((1, 2))
    assert len(whole) == len(first) == len(second)
    for w, a, b in zip(whole, first, second):
        assert a["mask"].shape == (4,)
        assert_same(w, {k: np.concatenate([a[k], b[k]]) for k in w})


def test_packing(corpus):
    ds = make(corpus, pack=True, raw_length=12, num_eval_examples=30)
    k = ds.examples_per_row
    li, lt = span_corruption.corrupted_lengths(12, 0.15, 3.0)
    assert k == min(64 // li, 16 // lt) and k > 1
    batch = next(ds.train_batches(0))
    assert sorted(batch) == sorted(PACKED_FIELDS)
    assert (batch["encoder_segment_ids"].max(axis=1) == k).all()
    assert ((batch["encoder_input_tokens"] == 1).sum(axis=1) == k).all()  # k EOS per row
    starts = batch["decoder_positions"] == 0
    assert (batch["decoder_input_tokens"][starts] == 0).all()
    rows = -(-30 // k)
    assert sum(b["mask"].sum() for b in ds.eval_batches()) == rows


def test_config_errors(corpus):
    with pytest.raises(ConfigError, match="vocab_path"):
        make(corpus, vocab_path="")
    with pytest.raises(ConfigError, match="does not exist; T5's public 32k vocabulary is gs://"):
        make(corpus, vocab_path="/nonexistent/spm.model")
    with pytest.raises(ConfigError, match="source"):
        make(corpus, source="web")
    with pytest.raises(ConfigError, match="truncate"):
        make(corpus, raw_length=1000).meta
    with pytest.raises(ConfigError, match="no text files"):
        make(corpus, train_files="/nonexistent/*.txt").example_batch()


def test_a_missing_vocabulary_says_where_to_get_one(corpus):
    """A C4 config without a vocabulary: one line naming T5's public one and how to make one."""
    with pytest.raises(ConfigError) as error:
        make(corpus, source="tfds", vocab_path="")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "config.dataset.vocab_path must name a SentencePiece .model file; T5's public 32k "
        "vocabulary is gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
    )
    assert "spiece.model of any Hugging Face T5 checkpoint" in message
    assert "`python -m launch.convert hf_t5 --input=DIR --workdir=OUT` copies to OUT/spm.model" in (
        message
    )
    assert "`python -m launch.prepare_data vocab --input=FILES --output=DIR/spm.model`" in message
    assert "english_mix" in message


def test_eval_of_the_train_files(corpus):
    ds = make(corpus)
    train = list(ds.eval_batches("train"))  # the first 21 chunks of the train files
    assert [int(b["mask"].sum()) for b in train] == [8, 8, 5]
    first = ds._example(ds._train_chunks[0], (0, 1, 0))  # the fixed eval key of chunk 0
    np.testing.assert_array_equal(train[0]["encoder_input_tokens"][0, : len(first[0])], first[0])
    default = list(ds.eval_batches())
    for a, b in zip(default, ds.eval_batches("eval")):
        assert_same(a, b)
    assert not np.array_equal(default[0]["encoder_input_tokens"], train[0]["encoder_input_tokens"])
    with pytest.raises(ConfigError, match=r"^eval split 'test': the span_corruption \(text"):
        ds.eval_batches("test")
