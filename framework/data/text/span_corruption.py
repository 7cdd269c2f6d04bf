"""T5's span-corruption objective, in numpy, and the raw length that avoids truncation.

For a chunk of `length` tokens (T5, Raffel et al. 2020, section 3.1.4):
- noise tokens: round(length * noise_density), kept within [1, length - 1];
- noise spans: round(noise tokens / mean_noise_span_length), at least 1;
- the noise and the non-noise tokens are each split at random into that many
  non-empty spans, interleaved starting with non-noise, so the chunk reads
  M_0 N_0 M_1 N_1 ... M_{n-1} N_{n-1} (M non-noise, N noise);
- inputs  = M_0 s_0 M_1 s_1 ... M_{n-1} s_{n-1} EOS,
  targets = s_0 N_0 s_1 N_1 ... s_{n-1} N_{n-1} EOS,
  with sentinel s_k = vocab_size - 1 - k (counted down from the top, in order).

The counts depend only on `length`, so every chunk of a given length corrupts to the
same input and target lengths; `raw_length` picks the largest chunk length whose
corrupted lengths fit the model's, so nothing is ever truncated.
"""

from __future__ import annotations

import numpy as np


def noise_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple:
    """(noise tokens, noise spans) for a chunk of `length` tokens."""
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
    num_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
    if num_spans > min(num_noise, length - num_noise):
        raise ValueError(
            f"{num_spans} noise spans do not fit {num_noise} noise and "
            f"{length - num_noise} non-noise tokens (length {length}, density "
            f"{noise_density}, mean span {mean_noise_span_length})"
        )
    return num_noise, num_spans


def corrupted_lengths(
    length: int, noise_density: float, mean_noise_span_length: float
) -> tuple[int, int]:
    """(inputs, targets) lengths, EOS included, of a corrupted chunk of `length` tokens."""
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    return length - num_noise + num_spans + 1, num_noise + num_spans + 1


def raw_length(
    inputs_length: int,
    targets_length: int,
    noise_density: float,
    mean_noise_span_length: float,
) -> int:
    """The largest chunk length whose corrupted inputs and targets fit the given lengths.

    A corrupted chunk is longer than `length` (sentinels, EOS), so no chunk longer than
    inputs_length + targets_length fits; every length up to that is tried.
    """
    best = 0
    for length in range(2, inputs_length + targets_length + 1):
        try:
            li, lt = corrupted_lengths(length, noise_density, mean_noise_span_length)
        except ValueError:
            continue
        if li <= inputs_length and lt <= targets_length:
            best = length
    if not best:
        raise ValueError(
            f"no chunk length corrupts into inputs <= {inputs_length} and targets <= "
            f"{targets_length} at density {noise_density}, mean span {mean_noise_span_length}"
        )
    return best


def random_segmentation(rng: np.random.Generator, num_items: int, num_segments: int) -> np.ndarray:
    """Lengths of a uniformly random split of `num_items` into `num_segments` non-empty runs."""
    cuts = np.sort(rng.choice(num_items - 1, num_segments - 1, replace=False)) + 1
    return np.diff(np.concatenate([[0], cuts, [num_items]]))


def noise_mask(
    rng: np.random.Generator, length: int, noise_density: float, mean_noise_span_length: float
) -> np.ndarray:
    """Bool [length]: True on noise tokens, in spans as the module docstring says."""
    num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
    noise = random_segmentation(rng, num_noise, num_spans)
    nonnoise = random_segmentation(rng, length - num_noise, num_spans)
    span_lengths = np.stack([nonnoise, noise], axis=1).reshape(-1)
    span_is_noise = np.tile([False, True], num_spans)
    return np.repeat(span_is_noise, span_lengths)


def corrupt(
    tokens: np.ndarray,
    rng: np.random.Generator,
    *,
    vocab_size: int,
    eos_id: int,
    noise_density: float = 0.15,
    mean_noise_span_length: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) int32 of one chunk of token ids, each ending in EOS."""
    tokens = np.asarray(tokens, np.int32)
    mask = noise_mask(rng, len(tokens), noise_density, mean_noise_span_length)
    span_start = mask & ~np.concatenate([[False], mask[:-1]])
    sentinels = (vocab_size - np.cumsum(span_start)).astype(np.int32)  # s_k = V - 1 - k
    keep = ~mask | span_start
    inputs = np.where(span_start, sentinels, tokens)[keep]
    starts = np.flatnonzero(span_start)
    noise_offsets = np.searchsorted(np.flatnonzero(mask), starts)
    targets = np.insert(tokens[mask], noise_offsets, sentinels[starts])
    eos = np.array([eos_id], np.int32)
    return np.concatenate([inputs, eos]), np.concatenate([targets, eos])
