"""An `Experiment`: a resolved config with everything built from it, before any state.

`build_experiment(config, mesh)` resolves the config, builds the mesh (`config.mesh`)
unless given one, checks its batch sizes against the mesh and builds the dataset,
model, optimizer and the state's layout: every parameter and optimizer-state leaf
sharded by its logical axis names (`framework.train.sharding`). The trainer,
`launch.evaluate`, the benchmarks and the tests build runs through this one path, so
they all compile the same steps (`framework.train.steps`) on the same state layout.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from framework.config import registry, schema
from framework.data import pipeline
from framework.errors import ConfigError
from framework.models import base
from framework.train import metric_sums, optimizers, sharding, steps, train_state


def make_mesh(devices: list[jax.Device] | None = None, mesh_config: Any = None) -> Mesh:
    """The (data, fsdp, model) mesh of `mesh_config` (default: data parallel over all
    devices, or those given)."""
    return sharding.make_mesh(mesh_config, devices)


def check_batch_sizes(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    """A one-line ConfigError naming the batch size that does not divide over the mesh's
    batch axes (`data x fsdp`), for training per micro-batch."""
    n = sharding.batch_shards(mesh)
    where = f"{n} batch shards (data x fsdp of mesh {sharding.describe_mesh(mesh)})"
    k = config.get("grad_accum_steps", 1)
    if config.batch_size % (n * k):
        per = f" in each of {k} micro-batches" if k > 1 else ""
        raise ConfigError(
            f"config.batch_size={config.batch_size} does not divide over {where}{per}; "
            f"use a multiple of {n * k}"
        )
    if config.eval_batch_size % n:
        raise ConfigError(
            f"config.eval_batch_size={config.eval_batch_size} does not divide over {where}; "
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
    """`init(rng) -> (TrainState, boxed parameters)` for batches shaped like
    `abstract_batch`; the boxes carry the logical axis names (read under eval_shape)."""

    def init(rng: jax.Array):
        batch = {k: jnp.zeros(v.shape, v.dtype) for k, v in abstract_batch.items()}
        boxed = model.init_boxed(rng, batch)
        params = nn.meta.unbox(boxed)
        outputs, aux = model.apply(params, batch, train=False)
        pairs = metric_sums.metric_pairs(model, outputs, aux, batch)
        names = tuple(pairs) + ("grad_norm", "learning_rate")
        return train_state.create(params, tx.init(params), names), boxed

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
    abstract_batch: dict[str, jax.ShapeDtypeStruct]  # global, split over the batch axes
    abstract_state: Any  # ShapeDtypeStructs carrying their shardings
    init_fn: Callable[[jax.Array], train_state.TrainState]
    param_axes: dict[tuple[str, ...], Any]  # parameter path -> logical axis names

    @functools.cached_property
    def example_batch(self) -> pipeline.Batch:
        """The first host-local training batch (made on first use: compiling needs only
        `abstract_batch`)."""
        return self.dataset.example_batch()

    @property
    def state_sharding(self) -> Any:
        return jax.tree.map(lambda a: a.sharding, self.abstract_state)

    def init_state(self) -> train_state.TrainState:
        """The initial state for `config.seed`, laid out over the mesh."""
        init = jax.jit(
            sharding.with_rules(self.init_fn, self.mesh), out_shardings=self.state_sharding
        )
        return init(jax.random.key(self.config.seed))

    def jit_train_step(self) -> Callable:
        """The trainer's train step, jitted for this state and batch layout."""
        step = steps.make_train_step(
            self.model,
            self.tx,
            self.lr_fn,
            self.config.seed,
            self.config.get("grad_accum_steps", 1),
        )
        return jax.jit(
            sharding.with_rules(step, self.mesh),
            in_shardings=(self.state_sharding, pipeline.data_sharding(self.mesh)),
            out_shardings=self.state_sharding,
            donate_argnums=(0,),
        )

    def compile_train_step(self) -> tuple[Callable, dict[str, Any]]:
        """The train step compiled ahead of its first call, and what one device holds
        for it (`memory`): the mesh, bytes of parameters, optimizer state and batch, and
        XLA's argument, output and temporary bytes of the compiled step."""
        compiled = self.jit_train_step().lower(self.abstract_state, self.abstract_batch).compile()
        return compiled, self.memory(compiled)

    def memory(self, compiled: Any = None) -> dict[str, Any]:
        """The mesh's axis sizes (`mesh_data`, ...) and per-device bytes of the state and
        batch (and of `compiled`'s buffers), as numbers for the metrics' info line."""
        out: dict[str, Any] = {
            **{f"mesh_{axis}": int(size) for axis, size in self.mesh.shape.items()},
            "param_bytes_per_device": sharding.bytes_per_device(self.abstract_state.params),
            "opt_state_bytes_per_device": sharding.bytes_per_device(self.abstract_state.opt_state),
            "batch_bytes_per_device": sharding.bytes_per_device(self.abstract_batch),
        }
        analysis = compiled.memory_analysis() if compiled is not None else None
        if analysis is not None:
            for name in ("argument", "output", "temp", "alias"):
                value = getattr(analysis, f"{name}_size_in_bytes", None)
                if value is not None:
                    out[f"xla_{name}_bytes_per_device"] = int(value)
        return out

    def jit_eval_step(self) -> Callable:
        """The trainer's eval step, jitted for these parameters and batch layout."""
        return jax.jit(
            sharding.with_rules(steps.make_eval_step(self.model), self.mesh),
            in_shardings=(self.state_sharding.params, pipeline.data_sharding(self.mesh)),
            out_shardings=NamedSharding(self.mesh, PartitionSpec()),
        )


def build_experiment(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Experiment:
    """Resolves `config` and builds its dataset, model, optimizer and state layout."""
    config = schema.resolve(config)
    mesh = make_mesh(mesh_config=config.mesh) if mesh is None else mesh
    check_batch_sizes(config, mesh)
    split = pipeline.HostSplit.current(config.batch_size, config.eval_batch_size)
    dataset = registry.DATASETS.get(config.dataset_name)(config.dataset, split, config.seed)
    model = registry.MODELS.get(config.model_name)(config.model, dataset.meta)
    tx, lr_fn = optimizers.create(config)
    abstract_batch = _global_abstract_batch(dataset.batch_spec(), split, mesh)
    initializer = _state_initializer(model, tx, abstract_batch)
    init_fn = lambda rng: initializer(rng)[0]  # noqa: E731
    shapes, boxed = jax.eval_shape(initializer, jax.random.key(config.seed))
    param_axes = sharding.logical_axes(boxed)
    shardings = sharding.state_shardings(shapes, param_axes, mesh)
    return Experiment(
        config=config,
        mesh=mesh,
        dataset=dataset,
        model=model,
        tx=tx,
        lr_fn=lr_fn,
        abstract_batch=abstract_batch,
        abstract_state=jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, shardings
        ),
        init_fn=init_fn,
        param_axes=param_axes,
    )
