"""T5 span corruption: order of sentinels, exact reconstruction, density, lengths."""

from __future__ import annotations

import numpy as np
import pytest

from framework.data.text import span_corruption as sc

VOCAB, EOS = 10_000, 1
SENTINELS = 1000  # tokens lie below, sentinels at or above


def reconstruct(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The original chunk: every sentinel of the inputs replaced by its target span."""
    spans, current = {}, None
    for t in targets[:-1].tolist():
        if t >= SENTINELS:
            current = spans.setdefault(t, [])
        else:
            current.append(t)
    out = []
    for t in inputs[:-1].tolist():
        out.extend(spans.pop(t) if t >= SENTINELS else [t])
    assert not spans
    return np.array(out)


def corrupt(tokens, seed, **kw):
    return sc.corrupt(tokens, np.random.default_rng(seed), vocab_size=VOCAB, eos_id=EOS, **kw)


def test_t5_lengths():
    assert sc.raw_length(512, 114, 0.15, 3.0) == 568  # T5's pre-training shapes
    assert sc.corrupted_lengths(568, 0.15, 3.0) == (512, 114)
    assert sc.noise_counts(568, 0.15, 3.0) == (85, 28)


@pytest.mark.parametrize("length", [2, 5, 30, 101, 568])
@pytest.mark.parametrize("density,mean", [(0.15, 3.0), (0.5, 3.0), (0.3, 1.0), (0.15, 8.0)])
def test_reconstruction_sentinels_and_lengths(length, density, mean):
    tokens = np.random.default_rng(length).integers(3, SENTINELS, size=length)
    for seed in range(20):
        inputs, targets = corrupt(tokens, seed, noise_density=density, mean_noise_span_length=mean)
        assert (len(inputs), len(targets)) == sc.corrupted_lengths(length, density, mean)
        assert inputs[-1] == EOS and targets[-1] == EOS
        num_noise, num_spans = sc.noise_counts(length, density, mean)
        expected = list(range(VOCAB - 1, VOCAB - 1 - num_spans, -1))
        assert inputs[inputs >= SENTINELS].tolist() == expected  # in order, from the top
        assert targets[targets >= SENTINELS].tolist() == expected
        assert targets[0] == VOCAB - 1  # targets start with the first sentinel
        assert len(targets) - num_spans - 1 == num_noise
        np.testing.assert_array_equal(reconstruct(inputs, targets), tokens)
        assert inputs.dtype == targets.dtype == np.int32


def test_noise_density_and_span_length_over_many_examples():
    rng = np.random.default_rng(0)
    noise = total = spans = 0
    position_noise, counted = np.zeros(200), 0
    for i in range(2000):
        length = int(rng.integers(20, 600))
        mask = sc.noise_mask(np.random.default_rng([7, i]), length, 0.15, 3.0)
        noise += mask.sum()
        total += length
        spans += np.sum(mask & ~np.concatenate([[False], mask[:-1]]))
        if length >= len(position_noise):
            position_noise += mask[: len(position_noise)]
            counted += 1
    assert abs(noise / total - 0.15) < 0.002
    assert abs(noise / spans - 3.0) < 0.1
    # Spans land anywhere past the first few positions (a chunk starts with non-noise).
    frequency = position_noise / counted
    assert position_noise[0] == 0 and frequency[1] > 0
    assert frequency[10:].min() > 0.1 and frequency[10:].max() < 0.2


def test_deterministic_per_key():
    tokens = np.arange(3, 203)
    a, b = corrupt(tokens, [1, 2, 3]), corrupt(tokens, [1, 2, 3])
    c = corrupt(tokens, [1, 2, 4])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_random_segmentation():
    rng = np.random.default_rng(0)
    for items, segments in [(1, 1), (10, 1), (10, 10), (85, 28), (500, 37)]:
        lengths = sc.random_segmentation(rng, items, segments)
        assert len(lengths) == segments and lengths.sum() == items and lengths.min() >= 1


@pytest.mark.parametrize("density,mean", [(0.15, 3.0), (0.5, 3.0), (0.3, 1.5), (0.05, 10.0)])
@pytest.mark.parametrize("inputs_length,targets_length", [(512, 114), (64, 16), (100, 100)])
def test_raw_length_is_the_largest_that_fits(inputs_length, targets_length, density, mean):
    raw = sc.raw_length(inputs_length, targets_length, density, mean)
    li, lt = sc.corrupted_lengths(raw, density, mean)
    assert li <= inputs_length and lt <= targets_length
    for longer in range(raw + 1, 2 * (inputs_length + targets_length)):
        try:
            li, lt = sc.corrupted_lengths(longer, density, mean)
        except ValueError:
            continue
        assert li > inputs_length or lt > targets_length, longer


def test_impossible_shapes_raise():
    with pytest.raises(ValueError):
        sc.raw_length(1, 1, 0.15, 3.0)
    with pytest.raises(ValueError):
        sc.noise_counts(1, 0.15, 3.0)
