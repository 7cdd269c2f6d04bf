"""Image classification over any prepared tensorflow-datasets data set (`tfds_images`).

Engine: tfds `data_source` (random access into ArrayRecord files) read by `grain`.
Random access is what makes the contract exact: the example at global position `pos`
of the training stream is record `perm_epoch[pos % N]` of a per-epoch permutation drawn
from (seed, epoch) (`pipeline.EpochOrder`), and its augmentation draws from a generator
seeded by (seed, pos).
A training batch is therefore a function of (seed, step) alone: a resumed run, a run
with another number of decode workers, and a run on more hosts all see the same
examples, and each process reads only its own rows (`HostSplit.local_slice`). tf.data
would need its iterator state checkpointed to resume exactly; grain needs nothing.

Decoding and augmentation (`dataset.pp_train` / `pp_eval`, see `framework.data.pp`)
run off the training thread: in `dataset.num_workers` grain worker processes, or, with
0 workers, in `dataset.num_threads` reader threads of this process. Mixup / cutmix
(`dataset.mixup`) mix each host batch with its own reverse, drawing from (seed, step).

Batches: `inputs` (the `image` after pp, float32 [B, H, W, C]), `label` int32 [B],
`labels` float32 [B, K] when the pp makes soft labels (`onehot`), `mask` [B]. The eval
split (`dataset.eval_split`, or any tfds split named to `eval_batches(split)`) is covered
once, padded with masked copies of its first record.

A data set that is not prepared stops the run before anything is built with one line
naming it, the files expected and the command that prepares them.
"""

from __future__ import annotations

import functools
import glob
import os
from typing import Any, Iterator, Mapping

import grain
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from framework.config import registry
from framework.data import pipeline
from framework.data.pp import batch_ops
from framework.data.pp import registry as pp
from framework.errors import ConfigError

_TRAIN_STREAM, _EVAL_STREAM, _ORDER_STREAM, _BATCH_STREAM = 0, 1, 2, 3
_NUMERIC_KEYS = ("inputs", "label", "labels")


def open_source(tfds_name: str, split: str, data_dir: str | None):
    """The tfds random-access source of `split` with images left encoded.

    Raises ConfigError naming the data set, the files it needs and the command that
    prepares it, when it is not prepared here (never downloads).
    """
    try:
        return tfds.data_source(
            tfds_name,
            split=split,
            data_dir=data_dir,
            download=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
    except Exception as error:  # tfds raises several types for "not here"
        raise ConfigError(_not_prepared_message(tfds_name, split, data_dir, error)) from None


def _not_prepared_message(tfds_name: str, split: str, data_dir: str | None, error) -> str:
    from framework.data.image_prepare import advice  # its tfds builders import TensorFlow

    root = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
    base_name = tfds_name.split(":")[0].split("/")[0]
    prepared = glob.glob(os.path.join(root, base_name, "**", "dataset_info.json"), recursive=True)
    command = advice.prepare_command(base_name, data_dir)
    if isinstance(error, (KeyError, ValueError)) and prepared and "split" in str(error).lower():
        return f"dataset.tfds_name={tfds_name!r} has no split {split!r} ({error})"
    if prepared and "format" in str(error).lower():
        return (
            f"dataset {tfds_name!r} in {root} is not in ArrayRecord format (random access "
            f"needs it); prepare it again with: {command}"
        )
    return (
        f"dataset {tfds_name!r} is not prepared in {root} (needs "
        f"{advice.expected_files(base_name)}); prepare it with: {command}"
    )


def _num_classes(tfds_name: str, data_dir: str | None) -> int:
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    return int(builder.info.features["label"].num_classes)


class _Load:
    """Global position -> (record, preprocessed example); picklable for grain workers."""

    def __init__(self, source, preprocess: pp.Preprocess, seed: int, stream: int, id_prefix: str):
        self.source = source
        self.preprocess = preprocess
        self.seed = seed
        self.stream = stream
        self.id_prefix = id_prefix

    def load(self, record: int, position: int) -> dict[str, Any]:
        raw = self.source[record]
        name = raw.get("file_name")
        where = f"{self.id_prefix}[{record}]" + (f" ({_text(name)})" if name is not None else "")
        example = {"image": raw["image"], "label": int(raw["label"]), "id": where}
        rng = np.random.default_rng([self.seed, self.stream, position])
        out = self.preprocess(example, rng)
        batch_row = {"inputs": out["image"], "label": np.int32(out["label"])}
        if "labels" in out:
            batch_row["labels"] = np.asarray(out["labels"], np.float32)
        return batch_row


def _text(value) -> str:
    value = value.item() if isinstance(value, np.ndarray) else value
    return value.decode() if isinstance(value, bytes) else str(value)


class _Row(_Load):
    """Local row index -> (batch, global position) in global batches of the split's
    `batch_size_field` rows, of which this process reads its own slice."""

    batch_size_field = "global_batch_size"

    def __init__(self, *args, split: pipeline.HostSplit, num_records: int):
        super().__init__(*args)
        self.global_size = getattr(split, self.batch_size_field)
        rows = split.local_slice(self.global_size)
        self.local = rows.stop - rows.start
        self.offset = rows.start
        self.num_records = num_records

    def position(self, index: int) -> tuple[int, int]:
        batch, row = divmod(int(index), self.local)
        return batch, batch * self.global_size + self.offset + row


class _TrainRow(_Row):
    """Local row index -> the training example this process reads for it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.order = pipeline.EpochOrder(self.seed, _ORDER_STREAM, self.num_records)

    def __call__(self, index: int) -> dict[str, Any]:
        step, position = self.position(index)
        out = self.load(self.order.index(position), position)
        out["step"] = np.int64(step)
        return out


class _EvalRow(_Row):
    """Local row index -> the eval example (or a masked padding copy of record 0)."""

    batch_size_field = "global_eval_batch_size"

    def __call__(self, index: int) -> dict[str, Any]:
        _, position = self.position(index)
        real = position < self.num_records
        out = self.load(position if real else 0, position)
        out["mask"] = np.float32(real)
        return out


class _FinishTrainBatch:
    """Batch-level mixup / cutmix from (seed, step), then the mask."""

    def __init__(self, seed: int, mixup: batch_ops.MixupSettings):
        self.seed = seed
        self.mixup = mixup

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        step = int(batch.pop("step")[0])
        if self.mixup.enabled:
            rng = np.random.default_rng([self.seed, _BATCH_STREAM, step])
            batch = batch_ops.mixup(
                batch,
                rng,
                mixup_alpha=self.mixup.mixup_alpha,
                cutmix_alpha=self.mixup.cutmix_alpha,
                switch_prob=self.mixup.switch_prob,
                key_image="inputs",
                key_labels="labels",
            )
        batch["mask"] = np.ones(len(batch["label"]), np.float32)
        return batch


@registry.DATASETS.register("tfds_images")
class TfdsImages(pipeline.DatasetBuilder):
    """Image classification over a prepared tfds data set (see the module docstring)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.tfds_name = ""  # e.g. imagenet2012, fashion_mnist, or a prepared image_folder
        c.data_dir = ml_collections.config_dict.placeholder(str)  # None: tfds default
        c.train_split = "train"  # tfds split strings, e.g. train[:98%]
        c.eval_split = "test"
        c.pp_train = "decode|value_range(-1, 1)"
        c.pp_eval = "decode|value_range(-1, 1)"
        c.mixup = ml_collections.ConfigDict(
            dict(mixup_alpha=0.0, cutmix_alpha=0.0, switch_prob=0.5)
        )
        c.num_workers = 0  # grain worker processes; 0: reader threads in this process
        c.num_threads = 8  # reader threads per process (or per worker)
        c.prefetch_batches = 4  # batches ready ahead of the training step
        return c

    def __init__(self, config: ml_collections.ConfigDict, split: pipeline.HostSplit, seed: int):
        super().__init__(config, split, seed)
        c = config
        if not c.tfds_name:
            raise ConfigError("dataset.tfds_name must name a tfds data set, got ''")
        for key in ("num_workers", "num_threads", "prefetch_batches"):
            if c[key] < (0 if key == "num_workers" else 1):
                raise ConfigError(f"dataset.{key} is out of range, got {c[key]}")
        if seed < 0:
            raise ConfigError(f"config.seed must be non-negative for image data, got {seed}")
        self.pp_train = pp.parse(c.pp_train, key="dataset.pp_train")
        self.pp_eval = pp.parse(c.pp_eval, key="dataset.pp_eval")
        self.mixup = batch_ops.MixupSettings(**c.mixup.to_dict())
        self.train_source = open_source(c.tfds_name, c.train_split, c.data_dir)
        if not len(self.train_source):
            raise ConfigError(f"dataset.train_split of {c.tfds_name!r} is empty")
        self._eval_sources: dict[str, Any] = {}
        self.eval_source = self._eval_source(None)

    def _eval_source(self, split: str | None):
        """The source of an eval split (None: `dataset.eval_split`), opened once."""
        c = self.config
        split = c.eval_split if split is None else split
        if split not in self._eval_sources:
            source = open_source(c.tfds_name, split, c.data_dir)
            if not len(source):
                what = "dataset.eval_split" if split == c.eval_split else f"eval split {split!r}"
                raise ConfigError(f"{what} of {c.tfds_name!r} is empty")
            self._eval_sources[split] = source
        return self._eval_sources[split]

    @functools.cached_property
    def meta(self) -> Mapping[str, Any]:
        return {
            "num_classes": _num_classes(self.config.tfds_name, self.config.data_dir),
            "num_eval_examples": len(self.eval_source),
            "num_train_examples": len(self.train_source),
        }

    def _iterate(self, dataset: grain.MapDataset) -> Iterator[pipeline.Batch]:
        c = self.config
        options = grain.ReadOptions(num_threads=c.num_threads, prefetch_buffer_size=c.num_threads)
        iterable = dataset.to_iter_dataset(options)
        if c.num_workers:
            iterable = iterable.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=c.num_workers, per_worker_buffer_size=c.prefetch_batches
                )
            )
        return iter(iterable)

    def _train_dataset(self, start_step: int) -> grain.MapDataset:
        """Training batches from `start_step` on, as a random-access grain dataset."""
        c = self.config
        local = self.split.local_batch_size
        row = _TrainRow(
            self.train_source,
            self.pp_train,
            self.seed,
            _TRAIN_STREAM,
            f"{c.tfds_name}/{c.train_split}",
            split=self.split,
            num_records=len(self.train_source),
        )
        return (
            grain.MapDataset.range(start_step * local, 2**62)
            .map(row)
            .batch(local, drop_remainder=True)
            .map(_FinishTrainBatch(self.seed, self.mixup))
        )

    def train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        return self._iterate(self._train_dataset(start_step))

    def example_batch(self) -> pipeline.Batch:
        """The first training batch, made in this thread (no workers started); checks
        that soft labels have one entry per class of the data set."""
        try:
            batch = self._train_dataset(0)[0]
        except ValueError as error:  # an op's arguments do not fit the data (label, size)
            raise ConfigError(f"dataset.pp_train on {self.config.tfds_name!r}: {error}") from None
        num_classes = self.meta["num_classes"]
        if "labels" in batch and batch["labels"].shape[-1] != num_classes:
            raise ConfigError(
                f"dataset.pp_train makes {batch['labels'].shape[-1]} one-hot classes but "
                f"{self.config.tfds_name!r} has {num_classes}; use onehot({num_classes})"
            )
        return batch

    def _eval_dataset(self, split: str | None = None) -> grain.MapDataset:
        """An eval split once (None: `dataset.eval_split`), padded to whole global
        batches, as a grain dataset."""
        c = self.config
        source = self._eval_source(split)
        total = len(source)
        num_batches = -(-total // self.split.global_eval_batch_size)
        local = self.split.local_eval_batch_size
        row = _EvalRow(
            source,
            self.pp_eval,
            self.seed,
            _EVAL_STREAM,
            f"{c.tfds_name}/{c.eval_split if split is None else split}",
            split=self.split,
            num_records=total,
        )
        return grain.MapDataset.range(num_batches * local).map(row).batch(local)

    def eval_batches(self, split: str | None = None) -> Iterator[pipeline.Batch]:
        """An eval split (None: `dataset.eval_split`; else any tfds split string of the
        data set, e.g. `train[:1000]`) once, padded and masked."""
        return self._iterate(self._eval_dataset(split))

    def example_eval_batch(self) -> pipeline.Batch:
        """The first eval batch, made in this thread (no reader threads left running)."""
        return self._eval_dataset()[0]
