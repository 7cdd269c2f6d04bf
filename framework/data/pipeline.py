"""The input pipeline contract: host-local numpy batches, padding masks, sharding.

A dataset builder (registered in `registry.DATASETS`) is a `DatasetBuilder` subclass.
It yields *host-local* batches: dicts of numpy arrays whose leading axis is this
process's slice of the global batch (`HostSplit.local_batch_size`). Every batch carries
`mask` ([B] float32, 1 for a real example, 0 for padding). Training batches are a
function of (seed, step) where the source allows, so a resumed run sees the same data.
Eval batches cover the whole eval split once; the last batch is padded with mask 0 and
every process yields the same number of eval batches. `eval_batches(split)` reads another
split the source has (None: the configured eval split); an unknown split is a one-line
ConfigError naming the known ones. Record orders of random-access sources come from
`EpochOrder` (`framework.data.order`, re-exported here).

`shard_batch` turns a host-local batch into global `jax.Array`s laid out over the mesh's
`data` axis.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from framework.data.order import EpochOrder as EpochOrder  # re-exported
from framework.errors import ConfigError

Batch = dict[str, np.ndarray]
DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class HostSplit:
    """How the global batch is divided over processes."""

    global_batch_size: int
    global_eval_batch_size: int
    process_index: int = 0
    process_count: int = 1

    def __post_init__(self):
        for name in ("global_batch_size", "global_eval_batch_size"):
            size = getattr(self, name)
            if size <= 0 or size % self.process_count:
                raise ConfigError(
                    f"{name}={size} must be a positive multiple of the "
                    f"process count {self.process_count}"
                )

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.process_count

    @property
    def local_eval_batch_size(self) -> int:
        return self.global_eval_batch_size // self.process_count

    def local_slice(self, global_size: int) -> slice:
        """This process's rows of a global batch of `global_size` rows."""
        local = global_size // self.process_count
        return slice(self.process_index * local, (self.process_index + 1) * local)

    @classmethod
    def current(cls, global_batch_size: int, global_eval_batch_size: int) -> "HostSplit":
        return cls(
            global_batch_size, global_eval_batch_size, jax.process_index(), jax.process_count()
        )


class DatasetBuilder:
    """Base class of registered datasets.

    Subclasses define `default_config()` (every dataset field with its default),
    `check_config()` (its values), `meta` (e.g. `num_classes`, `num_eval_examples` of the
    configured eval split), `train_batches(start_step)` and `eval_batches(split=None)`.
    """

    def __init__(self, config: ml_collections.ConfigDict, split: HostSplit, seed: int):
        self.config = config
        self.split = split
        self.seed = seed
        self.check_config(config)

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict()

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict) -> None:
        """Raises ConfigError naming the `config.dataset.` key of a bad value.

        Called by `schema.resolve` (config time, before anything is read) and on
        construction. Whether the data is there is checked on construction or first read.
        """

    @property
    def meta(self) -> Mapping[str, Any]:
        raise NotImplementedError

    def train_batches(self, start_step: int) -> Iterator[Batch]:
        """Host-local training batches for steps start_step, start_step + 1, ..."""
        raise NotImplementedError

    def eval_batches(self, split: str | None = None) -> Iterator[Batch]:
        """Host-local eval batches covering an eval split once, padded, with `mask`.

        `split`: another split of the source (None: the configured eval split).
        """
        raise NotImplementedError

    def example_batch(self) -> Batch:
        """One host-local training batch (for shapes: init, FLOPs)."""
        return next(iter(self.train_batches(0)))

    def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of one host-local training batch, for building the state and
        compiling the step. Here from `example_batch`; a dataset that can say them without
        making a batch (generated data at full size) overrides this."""
        return {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in self.example_batch().items()}

    def example_eval_batch(self) -> Batch:
        """The first host-local eval batch (e.g. to time the eval step)."""
        return next(iter(self.eval_batches()))


def own_split(split: str | None, known: Sequence[str], dataset: str) -> str:
    """`split`, or the first of `known` (the dataset's own eval split) when None.

    For sources with a fixed set of splits; one-line ConfigError naming them otherwise.
    """
    if split is None:
        return known[0]
    if split not in known:
        raise ConfigError(
            f"eval split {split!r}: the {dataset} dataset has no such split; "
            f"known: {', '.join(known)}"
        )
    return split


def pad_batch(batch: Mapping[str, np.ndarray], size: int) -> Batch:
    """Pads every array's leading axis to `size` rows and sets `mask` (0 on padding)."""
    n = len(next(iter(batch.values())))
    if n > size:
        raise ValueError(f"batch of {n} rows does not fit in {size}")
    out = {}
    for key, value in batch.items():
        if key == "mask":
            continue
        pad = np.zeros((size - n,) + value.shape[1:], value.dtype)
        out[key] = np.concatenate([value, pad], axis=0)
    mask = np.asarray(batch.get("mask", np.ones(n, np.float32)), np.float32)
    out["mask"] = np.concatenate([mask, np.zeros(size - n, np.float32)])
    return out


# The mesh axes a batch is split over, those of them the mesh has (`fsdp` splits the
# batch like `data`; see `framework.train.sharding`).
BATCH_MESH_AXES = (DATA_AXIS, "fsdp")


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    """The mesh axes a batch is split over: those of `BATCH_MESH_AXES` the mesh has."""
    return tuple(axis for axis in BATCH_MESH_AXES if axis in mesh.axis_names)


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the mesh's `data` (and `fsdp`) axes."""
    axes = batch_axes(mesh)
    return NamedSharding(mesh, PartitionSpec(axes[0] if len(axes) == 1 else axes))


def shard_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles host-local numpy batches into global arrays split over the batch axes."""
    sharding = data_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(dict(batch), sharding)  # one host: a plain (faster) transfer
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()
    }
