"""Generated stand-in datasets: random images and random seq2seq tokens.

Used to build, step and time models without real data (the image configs until their
tfds pipeline exists, the T5 step-time benchmark at the paper's sequence shapes).
Every batch is a function of (seed, split, batch index, first row), and each process
draws only its own rows, so no host makes the global batch; the data then depends on
the process count, which is fine for a stand-in.

- `random_images`: `inputs` [B, S, S, C] uniform in [-1, 1], `label` [B]. With
  `class_signal > 0` each class adds a fixed low-resolution pattern, so the labels can
  be learnt (a training run then shows progress).
- `random_seq2seq`: T5 batches of tokens uniform in [1, vocab_size): encoder inputs,
  decoder targets and the targets shifted right as decoder inputs; no padding.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import jax
import ml_collections
import numpy as np

from framework.config import registry
from framework.data import pipeline
from framework.errors import ConfigError

_TRAIN_STREAM, _EVAL_STREAM, _PATTERN_STREAM = 0, 1, 2
_PATTERN_CELLS = 4  # class patterns are 4x4 cells upsampled to the image size


class RandomDataset(pipeline.DatasetBuilder):
    """Train and eval batches of generated rows; subclasses define `_rows`."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.num_eval_examples = 256
        return c

    def _check(self) -> None:
        """Raises ConfigError for bad dataset fields (called before any batch)."""
        if self.config.num_eval_examples < 1:
            raise ConfigError(
                f"dataset.num_eval_examples must be positive, got {self.config.num_eval_examples}"
            )

    def _rows(self, rng: np.random.Generator, n: int) -> pipeline.Batch:
        """`n` generated rows (without `mask`)."""
        raise NotImplementedError

    def _draw(self, stream: int, index: int, first_row: int, n: int) -> pipeline.Batch:
        rng = np.random.default_rng([self.seed, stream, index, first_row])
        return {**self._rows(rng, n), "mask": np.ones(n, np.float32)}

    def train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        self._check()
        rows = self.split.local_slice(self.split.global_batch_size)
        step = start_step
        while True:
            yield self._draw(_TRAIN_STREAM, step, rows.start, rows.stop - rows.start)
            step += 1

    def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
        """From one generated row: a full-size batch (4096 images of 224 px) is not made
        only to read its shape."""
        self._check()
        n = self.split.local_batch_size
        row = self._draw(_TRAIN_STREAM, 0, 0, 1)
        return {k: jax.ShapeDtypeStruct((n,) + v.shape[1:], v.dtype) for k, v in row.items()}

    def eval_batches(self, split: str | None = None) -> Iterator[pipeline.Batch]:
        pipeline.own_split(split, ("eval",), "random")  # one generated eval stream
        self._check()
        return self._eval_batches()

    def _eval_batches(self) -> Iterator[pipeline.Batch]:
        total = self.config.num_eval_examples
        size = self.split.global_eval_batch_size
        rows = self.split.local_slice(size)
        local = rows.stop - rows.start
        for index, start in enumerate(range(0, total, size)):
            # Real examples of this global batch that fall in this process's rows.
            n = min(max(min(size, total - start) - rows.start, 0), local)
            yield pipeline.pad_batch(self._draw(_EVAL_STREAM, index, rows.start, n), local)


@registry.DATASETS.register("random_images")
class RandomImages(RandomDataset):
    """Batches `inputs` [B, S, S, C] float32, `label` [B] int32, `mask` [B]."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = super().default_config()
        c.image_size = 32
        c.num_channels = 3
        c.num_classes = 10
        c.class_signal = 0.0  # amplitude of the per-class pattern; 0: pure noise
        return c

    def _check(self) -> None:
        super()._check()
        c = self.config
        if c.image_size % _PATTERN_CELLS:
            raise ConfigError(
                f"dataset.image_size must be a multiple of {_PATTERN_CELLS}, got {c.image_size}"
            )
        if c.num_classes < 1:
            raise ConfigError(f"dataset.num_classes must be positive, got {c.num_classes}")

    def _patterns(self) -> np.ndarray:
        c = self.config
        rng = np.random.default_rng([self.seed, _PATTERN_STREAM])
        shape = (c.num_classes, _PATTERN_CELLS, _PATTERN_CELLS, c.num_channels)
        return rng.uniform(-1, 1, shape).astype(np.float32)

    def _rows(self, rng: np.random.Generator, n: int) -> pipeline.Batch:
        c = self.config
        labels = rng.integers(0, c.num_classes, size=n).astype(np.int32)
        shape = (n, c.image_size, c.image_size, c.num_channels)
        images = rng.uniform(-1, 1, shape).astype(np.float32)
        if c.class_signal:
            scale = c.image_size // _PATTERN_CELLS
            pattern = self._patterns()[labels].repeat(scale, axis=1).repeat(scale, axis=2)
            images = np.clip(images + c.class_signal * pattern, -1, 1)
        return {"inputs": images, "label": labels}

    @property
    def meta(self) -> Mapping[str, Any]:
        c = self.config
        return {"num_classes": c.num_classes, "num_eval_examples": c.num_eval_examples}


@registry.DATASETS.register("random_seq2seq")
class RandomSeq2Seq(RandomDataset):
    """T5 batches of random tokens: encoder inputs, decoder inputs and targets, `mask`."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = super().default_config()
        c.inputs_length = 512
        c.targets_length = 114
        c.vocab_size = 32128  # T5's vocabulary with its 100 sentinels, padded
        return c

    def _check(self) -> None:
        super()._check()
        for key in ("inputs_length", "targets_length"):
            if self.config[key] < 1:
                raise ConfigError(f"dataset.{key} must be positive, got {self.config[key]}")
        vocab_size = self.config.vocab_size
        if vocab_size < 2:
            raise ConfigError(f"dataset.vocab_size must be at least 2, got {vocab_size}")

    def _rows(self, rng: np.random.Generator, n: int) -> pipeline.Batch:
        c = self.config
        inputs = rng.integers(1, c.vocab_size, (n, c.inputs_length), dtype=np.int32)
        targets = rng.integers(1, c.vocab_size, (n, c.targets_length), dtype=np.int32)
        shifted = np.zeros_like(targets)
        shifted[:, 1:] = targets[:, :-1]
        return {
            "encoder_input_tokens": inputs,
            "decoder_input_tokens": shifted,
            "decoder_target_tokens": targets,
        }

    @property
    def meta(self) -> Mapping[str, Any]:
        return {
            "vocab_size": self.config.vocab_size,
            "num_eval_examples": self.config.num_eval_examples,
        }
