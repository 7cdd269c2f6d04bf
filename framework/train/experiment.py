"""An `Experiment`: a resolved config with everything built from it, before any state.

`build_experiment(config, mesh)` resolves the config, checks its batch sizes against
the mesh and builds the dataset, model, optimizer and the state's layout. The trainer,
`launch.evaluate`, the benchmarks and the tests build runs through this one path, so
they all compile the same steps (`framework.train.steps`) on the same state layout.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from framework.config import registry, schema
from framework.data import pipeline
from framework.errors import ConfigError
from framework.models import base
from framework.train import metric_sums, optimizers, steps, train_state


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all devices (or those given) with axis `data`."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (pipeline.DATA_AXIS,))


def check_batch_sizes(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """A one-line ConfigError naming the batch size that does not divide over `mesh`."""
    n = mesh.devices.size
    for key in ("batch_size", "eval_batch_size"):
        if config[key] % n:
            raise ConfigError(
                f"config.{key}={config[key]} does not divide over {n} devices; "
                f"use a multiple of {n}"
            )


def _global_abstract_batch(batch: pipeline.Batch, split: pipeline.HostSplit, mesh: Mesh):
    """ShapeDtypeStructs of the global batch assembled from host-local `batch`."""
    sharding = pipeline.data_sharding(mesh)
    return {
        k: jax.ShapeDtypeStruct(
            (v.shape[0] * split.process_count,) + v.shape[1:], v.dtype, sharding=sharding
        )
        for k, v in batch.items()
    }


def _state_initializer(model: base.BaseModel, tx, abstract_batch) -> Callable:
    """`init(rng) -> TrainState` for batches shaped like `abstract_batch`."""

    def init(rng: jax.Array) -> train_state.TrainState:
        batch = {k: jnp.zeros(v.shape, v.dtype) for k, v in abstract_batch.items()}
        params = model.init(rng, batch)
        outputs, aux = model.apply(params, batch, train=False)
        pairs = metric_sums.metric_pairs(model, outputs, aux, batch)
        names = tuple(pairs) + ("grad_norm", "learning_rate")
        return train_state.create(params, tx.init(params), names)

    return init


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A resolved config with everything built from it, before any state exists.

    The trainer, the bare-loop benchmark and the tests build runs through this one
    path, so they all compile the same train step on the same state layout.
    """

    config: ml_collections.ConfigDict
    mesh: Mesh
    dataset: pipeline.DatasetBuilder
    model: base.BaseModel
    tx: optax.GradientTransformation
    lr_fn: Callable[[Any], Any]
    example_batch: pipeline.Batch  # host-local, the first training batch
    abstract_batch: dict[str, jax.ShapeDtypeStruct]  # global, sharded over `data`
    abstract_state: Any  # ShapeDtypeStructs carrying their (replicated) shardings
    init_fn: Callable[[jax.Array], train_state.TrainState]

    @property
    def state_sharding(self) -> Any:
        return jax.tree.map(lambda a: a.sharding, self.abstract_state)

    def init_state(self) -> train_state.TrainState:
        """The initial state for `config.seed`, laid out over the mesh."""
        init = jax.jit(self.init_fn, out_shardings=self.state_sharding)
        return init(jax.random.key(self.config.seed))

    def jit_train_step(self) -> Callable:
        """The trainer's train step, jitted for this state and batch layout."""
        return jax.jit(
            steps.make_train_step(self.model, self.tx, self.lr_fn, self.config.seed),
            in_shardings=(self.state_sharding, pipeline.data_sharding(self.mesh)),
            out_shardings=self.state_sharding,
            donate_argnums=(0,),
        )

    def jit_eval_step(self) -> Callable:
        """The trainer's eval step, jitted for these parameters and batch layout."""
        return jax.jit(
            steps.make_eval_step(self.model),
            in_shardings=(self.state_sharding.params, pipeline.data_sharding(self.mesh)),
            out_shardings=NamedSharding(self.mesh, PartitionSpec()),
        )


def build_experiment(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Experiment:
    """Resolves `config` and builds its dataset, model, optimizer and state layout."""
    config = schema.resolve(config)
    mesh = make_mesh() if mesh is None else mesh
    check_batch_sizes(config, mesh)
    split = pipeline.HostSplit.current(config.batch_size, config.eval_batch_size)
    dataset = registry.DATASETS.get(config.dataset_name)(config.dataset, split, config.seed)
    model = registry.MODELS.get(config.model_name)(config.model, dataset.meta)
    tx, lr_fn = optimizers.create(config)
    example_batch = dataset.example_batch()
    abstract_batch = _global_abstract_batch(example_batch, split, mesh)
    init_fn = _state_initializer(model, tx, abstract_batch)
    replicated = NamedSharding(mesh, PartitionSpec())
    shapes = jax.eval_shape(init_fn, jax.random.key(config.seed))
    return Experiment(
        config=config,
        mesh=mesh,
        dataset=dataset,
        model=model,
        tx=tx,
        lr_fn=lr_fn,
        example_batch=example_batch,
        abstract_batch=abstract_batch,
        abstract_state=jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), shapes
        ),
        init_fn=init_fn,
    )
