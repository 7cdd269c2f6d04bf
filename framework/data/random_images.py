"""Random images and labels generated from (seed, step): a stand-in image dataset.

Used to build, step and time image models before the real image pipeline exists
(ImageNet arrives with its own builder). Images are uniform in [-1, 1]; with
`class_signal > 0` each class adds a fixed low-resolution pattern, so the labels can be
learnt (useful for checking that a training run makes progress). Each process draws
only its own rows (seeded by seed, step and first row), so no host makes the global
batch; the data then depends on the process count, which is fine for a stand-in.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import ml_collections
import numpy as np

from framework import registry
from framework.data import pipeline
from framework.errors import ConfigError

_TRAIN_STREAM, _EVAL_STREAM, _PATTERN_STREAM = 0, 1, 2
_PATTERN_CELLS = 4  # class patterns are 4x4 cells upsampled to the image size


@registry.DATASETS.register("random_images")
class RandomImages(pipeline.DatasetBuilder):
    """Batches `inputs` [B, S, S, C] float32, `label` [B] int32, `mask` [B]."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.image_size = 32
        c.num_channels = 3
        c.num_classes = 10
        c.num_eval_examples = 256
        c.class_signal = 0.0  # amplitude of the per-class pattern; 0: pure noise
        return c

    def _check(self) -> None:
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
        cells = rng.uniform(
            -1, 1, (c.num_classes, _PATTERN_CELLS, _PATTERN_CELLS, c.num_channels)
        ).astype(np.float32)
        return cells

    def _rows(self, stream: int, index: int, first_row: int, n: int) -> pipeline.Batch:
        """Rows first_row.. of batch `index`; drawn per process, so no host makes all."""
        c = self.config
        rng = np.random.default_rng([self.seed, stream, index, first_row])
        labels = rng.integers(0, c.num_classes, size=n).astype(np.int32)
        shape = (n, c.image_size, c.image_size, c.num_channels)
        images = rng.uniform(-1, 1, shape).astype(np.float32)
        if c.class_signal:
            scale = c.image_size // _PATTERN_CELLS
            pattern = self._patterns()[labels].repeat(scale, axis=1).repeat(scale, axis=2)
            images = np.clip(images + c.class_signal * pattern, -1, 1)
        return {"inputs": images, "label": labels, "mask": np.ones(n, np.float32)}

    @property
    def meta(self) -> Mapping[str, Any]:
        c = self.config
        return {
            "num_classes": c.num_classes,
            "input_shape": (c.image_size, c.image_size, c.num_channels),
            "num_eval_examples": c.num_eval_examples,
        }

    def train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        self._check()
        rows = self.split.local_slice(self.split.global_batch_size)
        step = start_step
        while True:
            yield self._rows(_TRAIN_STREAM, step, rows.start, rows.stop - rows.start)
            step += 1

    def eval_batches(self) -> Iterator[pipeline.Batch]:
        self._check()
        total = self.config.num_eval_examples
        size = self.split.global_eval_batch_size
        rows = self.split.local_slice(size)
        local = rows.stop - rows.start
        for index, start in enumerate(range(0, total, size)):
            # Real examples of this global batch that fall in this process's rows.
            n = min(max(min(size, total - start) - rows.start, 0), local)
            batch = self._rows(_EVAL_STREAM, index, rows.start, n)
            yield pipeline.pad_batch(batch, local)
