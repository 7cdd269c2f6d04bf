"""The parity task, generated from (seed, step): infinite, reproducible, resumable.

Two variants (`dataset.variant`):
- `release` (AdaTape's release): `length` symbols drawn uniformly from {1, 0, -1};
  the label is the number of 1s mod 2.
- `act` (ACT / PonderNet): `length` positions, a random number in
  [min_nonzero, max_nonzero] of them set to +1 or -1 at random, the rest 0; the label
  is the number of +1s mod 2. Eval may use another range (`eval_min_nonzero`,
  `eval_max_nonzero`) for the extrapolation test.
Inputs are one-hot over the values (-1, 0, 1) ([B, length, 3] float32), or the raw
values ([B, length, 1]) with `encoding='values'`.
Train and eval draw from different streams of the same seed, so they never coincide
by construction of the random state.

Length curriculum (`curriculum_steps` > 0, one-hot encoding): training step s uses
only the first `curriculum_start_length` + (length - start) * s / curriculum_steps
positions (rounded up, at most `length`); the rest are padding (all-zero features,
never counted in the label). Evaluation always uses the full length.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import ml_collections
import numpy as np

from framework.config import fields, registry
from framework.data import pipeline
from framework.errors import ConfigError

_TRAIN_STREAM, _EVAL_STREAM = 0, 1
VARIANTS = ("release", "act")
ENCODINGS = ("one_hot", "values")


def make_examples(
    rng: np.random.Generator,
    n: int,
    *,
    variant: str,
    length: int,
    min_nonzero: int,
    max_nonzero: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (values [n, length] int8 in {-1, 0, 1}, labels [n] int32)."""
    if variant == "release":
        values = rng.integers(-1, 2, size=(n, length)).astype(np.int8)
    elif variant == "act":
        counts = rng.integers(min_nonzero, max_nonzero + 1, size=n)
        signs = rng.choice(np.array([-1, 1], np.int8), size=(n, length))
        # A random permutation per row; the first `count` positions are nonzero.
        order = np.argsort(rng.random((n, length)), axis=1)
        ranks = np.argsort(order, axis=1)
        values = np.where(ranks < counts[:, None], signs, 0).astype(np.int8)
    else:
        raise ConfigError(f"config.dataset.variant must be 'release' or 'act', got {variant!r}")
    labels = ((values == 1).sum(axis=1) % 2).astype(np.int32)
    return values, labels


def encode(values: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "one_hot":
        return np.eye(3, dtype=np.float32)[values.astype(np.int64) + 1]
    if encoding == "values":
        return values.astype(np.float32)[..., None]
    raise ConfigError(f"config.dataset.encoding must be 'one_hot' or 'values', got {encoding!r}")


def _nonzero_range(c: ml_collections.ConfigDict, train: bool) -> tuple[int, int]:
    """The (train or eval) range of nonzero counts of the `act` variant, checked."""
    lo, hi = c.min_nonzero, c.max_nonzero or c.length
    keys = "config.dataset.min_nonzero, max_nonzero"
    if not train:
        lo, hi = c.eval_min_nonzero or lo, c.eval_max_nonzero or hi
        keys = "config.dataset.eval_min_nonzero, eval_max_nonzero"
    if not 0 <= lo <= hi <= c.length:
        raise ConfigError(
            f"{keys}: the nonzero range [{lo}, {hi}] must lie in [0, {c.length}] "
            f"(config.dataset.length)"
        )
    return lo, hi


@registry.DATASETS.register("parity")
class Parity(pipeline.DatasetBuilder):
    """Parity batches; each global batch is drawn whole and each process takes its rows."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.variant = "release"
        c.length = 32
        c.encoding = "one_hot"
        c.min_nonzero = 1
        c.max_nonzero = 0  # 0: length
        c.eval_min_nonzero = 0  # 0: same as train
        c.eval_max_nonzero = 0
        c.num_eval_examples = 2048
        c.curriculum_steps = 0  # 0: no length curriculum
        c.curriculum_start_length = 8
        return c

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        fields.check_one_of("config.dataset.variant", config.variant, VARIANTS)
        fields.check_one_of("config.dataset.encoding", config.encoding, ENCODINGS)
        fields.check_positive("config.dataset.length", config.length)
        fields.check_positive("config.dataset.num_eval_examples", config.num_eval_examples)
        for key in ("min_nonzero", "max_nonzero", "eval_min_nonzero", "eval_max_nonzero"):
            if config[key] < 0:
                raise ConfigError(f"config.dataset.{key} must be >= 0, got {config[key]}")
        _nonzero_range(config, train=True)
        _nonzero_range(config, train=False)
        if config.curriculum_steps < 0:
            raise ConfigError(
                f"config.dataset.curriculum_steps must be >= 0, got {config.curriculum_steps}"
            )
        if config.curriculum_steps:
            if not 1 <= config.curriculum_start_length <= config.length:
                raise ConfigError(
                    f"config.dataset.curriculum_start_length must lie in [1, {config.length}] "
                    f"(config.dataset.length), got {config.curriculum_start_length}"
                )
            if config.encoding != "one_hot":
                raise ConfigError(
                    "config.dataset.curriculum_steps needs config.dataset.encoding='one_hot' "
                    "(padding is an all-zero one-hot)"
                )

    def active_length(self, step: int) -> int:
        """Positions in use at training step `step` (the whole length without curriculum)."""
        c = self.config
        if not c.curriculum_steps or step >= c.curriculum_steps:
            return c.length
        grown = -(-(c.length - c.curriculum_start_length) * step // c.curriculum_steps)
        return c.curriculum_start_length + grown

    def _range(self, train: bool) -> tuple[int, int]:
        return _nonzero_range(self.config, train)

    def _global_batch(
        self, stream: int, index: int, n: int, train: bool, active: int | None = None
    ) -> pipeline.Batch:
        lo, hi = self._range(train)
        rng = np.random.default_rng([self.seed, stream, index])
        values, labels = make_examples(
            rng,
            n,
            variant=self.config.variant,
            length=self.config.length,
            min_nonzero=lo,
            max_nonzero=hi,
        )
        inputs = encode(values, self.config.encoding)
        if active is not None and active < self.config.length:
            inputs[:, active:] = 0.0  # padding
            labels = ((values[:, :active] == 1).sum(axis=1) % 2).astype(np.int32)
        return {"inputs": inputs, "label": labels, "mask": np.ones(n, np.float32)}

    @property
    def meta(self) -> Mapping[str, Any]:
        width = 3 if self.config.encoding == "one_hot" else 1
        return {
            "num_classes": 2,
            "input_shape": (self.config.length, width),
            "num_eval_examples": self.config.num_eval_examples,
        }

    def train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        self._range(True)
        size = self.split.global_batch_size
        rows = self.split.local_slice(size)
        step = start_step
        while True:
            batch = self._global_batch(
                _TRAIN_STREAM, step, size, train=True, active=self.active_length(step)
            )
            yield {k: v[rows] for k, v in batch.items()}
            step += 1

    def eval_batches(self, split: str | None = None) -> Iterator[pipeline.Batch]:
        pipeline.own_split(split, ("eval",), "parity")  # generated: one eval stream
        return self._eval_batches()

    def _eval_batches(self) -> Iterator[pipeline.Batch]:
        total = self.config.num_eval_examples
        size = self.split.global_eval_batch_size
        rows = self.split.local_slice(size)
        for index, start in enumerate(range(0, total, size)):
            n = min(size, total - start)
            batch = pipeline.pad_batch(
                self._global_batch(_EVAL_STREAM, index, n, train=False), size
            )
            yield {k: v[rows] for k, v in batch.items()}
