"""The device mesh and the one rules table that maps logical axis names to mesh axes.

The mesh has three named axes, set by `config.mesh`:
- `data`: pure data parallelism; parameters replicated.
- `fsdp`: the batch is split over it like `data`, and parameters and optimizer state
  are split over it too (along their `embed` axis): fully sharded data parallelism.
- `model`: tensor parallelism; attention heads, MLP hidden units and the vocabulary
  are split over it.
The batch is split over `data x fsdp`. The default (`data=-1`, the rest 1) is pure
data parallelism over every device, as before this module existed.

Why flax linen's logical partitioning (and not big_vision's regex strategies): the
models name their axes where they create them (`framework.models.partitioning`), so a
new layer is annotated once, next to its shape, and a test can prove that every
parameter of every model is covered; the rules below are then the only place that
knows the mesh. Flax resolves the rules in order and skips a mesh axis already used by
the same array, so activations `(batch, length, embed)` shard `batch` over
`data x fsdp` and leave `embed` whole, while a kernel `(embed, mlp)` goes to
`(fsdp, model)`.

Optimizer state is sharded like the parameter it belongs to: each optimizer-state leaf
is matched to its parameter by its path (optax keeps parameter-shaped subtrees), with
Adafactor's factored rows / columns taking the parameter's names minus the reduced
axis. A dimension that a mesh axis does not divide stays whole (replicated along it).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Mapping

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from framework.data import pipeline
from framework.errors import ConfigError
from framework.models import partitioning as pt

DATA, FSDP, MODEL = "data", "fsdp", "model"
MESH_AXES = (DATA, FSDP, MODEL)
BATCH_AXES = pipeline.BATCH_MESH_AXES

# Logical axis name -> mesh axis (None: never split). Order matters: for each array
# the first rule whose mesh axis is still free wins.
RULES: tuple[tuple[str, Any], ...] = (
    (pt.BATCH, BATCH_AXES),
    (pt.VOCAB, MODEL),
    (pt.HEADS, MODEL),
    (pt.MLP, MODEL),
    (pt.EMBED, FSDP),
    (pt.KV, None),
    (pt.LENGTH, None),
    (pt.CLASSES, None),
    (pt.PATCH, None),
    (pt.BANK, None),
    (pt.SUBBLOCKS, None),
    (pt.BUCKETS, None),
    (pt.LAYERS, None),
    (pt.UNSHARDED, None),
)


def default_mesh_config() -> ml_collections.ConfigDict:
    """`config.mesh`: devices per axis; one axis may be -1 (the devices left over)."""
    return ml_collections.ConfigDict({DATA: -1, FSDP: 1, MODEL: 1})


def check_mesh_config(mesh_config: Mapping[str, int]) -> dict[str, int]:
    """The axis sizes of `config.mesh`; a one-line ConfigError unless each is positive
    and at most one is -1 (checked at config time, before the devices are known)."""
    unknown = sorted(set(mesh_config) - set(MESH_AXES))
    if unknown:
        raise ConfigError(f"config.mesh: unknown axis {unknown[0]!r}; axes: {', '.join(MESH_AXES)}")
    sizes = {axis: mesh_config.get(axis, 1) for axis in MESH_AXES}
    if not all(isinstance(size, int) and (size > 0 or size == -1) for size in sizes.values()) or (
        list(sizes.values()).count(-1) > 1
    ):
        raise ConfigError(
            f"config.mesh: each axis must be a positive size and at most one -1, got "
            f"{_describe(sizes)}"
        )
    return sizes


def mesh_shape(mesh_config: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
    """(data, fsdp, model) sizes for `num_devices`; a one-line ConfigError if they do
    not fit."""
    sizes = check_mesh_config(mesh_config)
    free = [axis for axis, size in sizes.items() if size == -1]
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if free:
        if num_devices % fixed:
            raise ConfigError(
                f"config.mesh {_describe(sizes)}: {fixed} does not divide the {num_devices} devices"
            )
        sizes[free[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise ConfigError(
            f"config.mesh {_describe(sizes)} needs {fixed} devices, there are {num_devices}; "
            "set one axis to -1 to take the rest"
        )
    return sizes[DATA], sizes[FSDP], sizes[MODEL]


def _describe(sizes: Mapping[str, int]) -> str:
    return " ".join(f"{axis}={size}" for axis, size in sizes.items())


def make_mesh(
    mesh_config: Mapping[str, int] | None = None, devices: list[jax.Device] | None = None
) -> Mesh:
    """A (data, fsdp, model) mesh over `devices` (all by default); `model` varies
    fastest, so tensor-parallel groups sit on neighbouring devices."""
    devices = jax.devices() if devices is None else list(devices)
    shape = mesh_shape(mesh_config or default_mesh_config(), len(devices))
    return Mesh(_device_grid(shape, devices), MESH_AXES)


def _device_grid(shape: tuple[int, int, int], devices: list[jax.Device]) -> np.ndarray:
    """`devices` arranged as `shape` along the physical links: over several TPU slices
    the `data` axis spans the slices first (only gradients cross the slower data-centre
    network); within a slice a mesh axis may split a physical axis where it must."""
    slices = len({getattr(d, "slice_index", 0) for d in devices})
    if slices > 1 and shape[0] % slices == 0:
        ici = (shape[0] // slices, *shape[1:])
        try:
            return mesh_utils.create_hybrid_device_mesh(ici, (slices, 1, 1), devices)
        except (ValueError, AssertionError, NotImplementedError):
            pass
    for split in (False, True):
        try:
            return mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=split)
        except (ValueError, AssertionError, NotImplementedError):
            continue
    return np.asarray(devices).reshape(shape)


def describe_mesh(mesh: Mesh) -> str:
    """'data=2 fsdp=1 model=1 (2 devices)'."""
    return f"{_describe(dict(mesh.shape))} ({mesh.devices.size} devices)"


def batch_shards(mesh: Mesh) -> int:
    """How many ways the batch is split."""
    return math.prod(mesh.shape[axis] for axis in pipeline.batch_axes(mesh))


@contextlib.contextmanager
def rules_context(mesh: Mesh) -> Iterator[None]:
    """Logical constraints inside resolve with `RULES` on `mesh` (enter while tracing)."""
    with nn.logical_axis_rules(RULES), pt.constraint_mesh(mesh):
        yield


def with_rules(fn, mesh: Mesh):
    """`fn` traced inside `rules_context(mesh)`, so the models' `constrain` calls apply."""

    def wrapped(*args, **kwargs):
        with rules_context(mesh):
            return fn(*args, **kwargs)

    return wrapped


def _mesh_axes(names: tuple[str | None, ...]) -> list[Any]:
    """Logical names -> mesh axes by `RULES` (first free rule wins; unknown -> None)."""
    used: set[str] = set()
    out: list[Any] = []
    for name in names:
        chosen = None
        for rule_name, mesh_axis in RULES:
            if rule_name != name or mesh_axis is None:
                continue
            axes = (mesh_axis,) if isinstance(mesh_axis, str) else tuple(mesh_axis)
            if not used.intersection(axes):
                chosen = mesh_axis
                used.update(axes)
                break
        out.append(chosen)
    return out


def logical_sharding(
    names: tuple[str | None, ...] | None, shape: tuple[int, ...], mesh: Mesh
) -> NamedSharding:
    """The sharding of an array of `shape` whose axes have logical `names` (None:
    replicated). Mesh axes absent from `mesh`, of size 1, or not dividing their
    dimension are dropped, so any shape has a valid sharding."""
    if not names:
        return NamedSharding(mesh, PartitionSpec())
    if len(names) != len(shape):
        raise ValueError(f"logical names {names} do not match shape {shape}")
    spec = []
    for size, mesh_axis in zip(shape, _mesh_axes(names)):
        axes = (mesh_axis,) if isinstance(mesh_axis, str) else tuple(mesh_axis or ())
        axes = tuple(a for a in axes if a in mesh.axis_names and mesh.shape[a] > 1)
        if axes and size % math.prod(mesh.shape[a] for a in axes) == 0:
            spec.append(axes[0] if len(axes) == 1 else axes)
        else:
            spec.append(None)
    return NamedSharding(mesh, PartitionSpec(*spec))


def _key(entry: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def path_keys(path: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(_key(entry) for entry in path)


def logical_axes(boxed_params: Any) -> dict[tuple[str, ...], tuple[str | None, ...] | None]:
    """{parameter path: its logical names (None if unannotated)} from `model.init`'s
    boxed tree (abstract or not)."""
    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)  # noqa: E731
    flat = jax.tree_util.tree_flatten_with_path(boxed_params, is_leaf=is_box)[0]
    return {path_keys(path): (tuple(leaf.names) if is_box(leaf) else None) for path, leaf in flat}


def unmapped_axes(axes: Mapping[tuple[str, ...], tuple[str | None, ...] | None]) -> list[str]:
    """Parameters without a logical annotation, or with a name the rules do not map."""
    known = {name for name, _ in RULES}
    bad = []
    for path, names in axes.items():
        if names is None or any(n not in known for n in names):
            bad.append(f"{'/'.join(path)}: {names}")
    return bad


def _state_leaf_names(
    leaf_path: tuple[str, ...],
    shape: tuple[int, ...],
    params: Mapping[tuple[str, ...], tuple[tuple[int, ...], tuple[str | None, ...] | None]],
) -> tuple[str | None, ...] | None:
    """The logical names of an optimizer-state leaf, from the parameter it belongs to."""
    for start in range(len(leaf_path)):
        found = params.get(leaf_path[start:])
        if found is None:
            continue
        param_shape, names = found
        if names is None:
            return None
        if tuple(shape) == tuple(param_shape):
            return names
        if len(shape) == len(param_shape) - 1:  # Adafactor's factored rows / columns
            for dropped in range(len(param_shape)):
                if tuple(np.delete(param_shape, dropped)) == tuple(shape):
                    return names[:dropped] + names[dropped + 1 :]
        return None
    return None


def state_shardings(abstract_state: Any, axes: Mapping, mesh: Mesh) -> Any:
    """NamedShardings for a train state (`.params`, `.opt_state`; the rest replicated)
    from the parameters' logical `axes` (see `logical_axes`)."""
    params_flat = jax.tree_util.tree_flatten_with_path(abstract_state.params)[0]
    params = {}
    for path, leaf in params_flat:
        key = path_keys(path)
        params[key] = (tuple(leaf.shape), axes.get(key))

    def param_sharding(path, leaf):
        return logical_sharding(params[path_keys(path)][1], leaf.shape, mesh)

    def opt_sharding(path, leaf):
        names = _state_leaf_names(path_keys(path), tuple(leaf.shape), params)
        return logical_sharding(names, leaf.shape, mesh)

    replicated = NamedSharding(mesh, PartitionSpec())
    shardings = jax.tree.map(lambda _: replicated, abstract_state)
    return shardings.replace(
        params=jax.tree_util.tree_map_with_path(param_sharding, abstract_state.params),
        opt_state=jax.tree_util.tree_map_with_path(opt_sharding, abstract_state.opt_state),
    )


def bytes_per_device(tree: Any) -> int:
    """Bytes one device holds of `tree`'s arrays (abstract with shardings, or concrete)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = tuple(leaf.shape)
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None:
            shape = sharding.shard_shape(shape)
        total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
    return int(total)
