"""What every model shares for scale: logical axis names, compute dtype, rematerialisation.

Parameters carry *logical* axis names (flax linen's logical partitioning: an initializer
wrapped by `param_init` returns an `nn.LogicallyPartitioned` box), and activations at
block boundaries are constrained by logical names (`constrain`). Models never name a
mesh axis: one rules table (`framework.train.sharding.RULES`) maps these names to the
mesh axes `data`, `fsdp` and `model`, so a new mesh layout is a change of rules, not of
models. Outside a rules context (a module applied directly, as tests do), `constrain` is
a no-op.

Precision: `config.model.dtype` is the dtype of the computation (matmul inputs and
activations). Parameters and optimizer state stay float32; losses, softmax statistics,
norms and halting sums are computed in float32 by the modules that own them.

Rematerialisation: `config.model.remat` names a policy (`REMAT_POLICIES`) applied with
`nn.remat` to a model's repeated blocks (`remat`), trading recomputation in the
backward pass for activation memory.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from framework.config import fields

Array = jax.Array

# Logical axis names. Parameters and activations use only these; the rules table in
# `framework.train.sharding` maps each to a mesh axis (or to none: replicated).
BATCH = "batch"  # examples
LENGTH = "length"  # sequence positions (tokens, patches, tape slots)
EMBED = "embed"  # the model width (d_model / hidden_size)
MLP = "mlp"  # the feed-forward hidden width
HEADS = "heads"  # attention heads
KV = "kv"  # the width of one attention head
VOCAB = "vocab"  # token vocabulary (embedding rows, logits)
CLASSES = "classes"  # classifier outputs
PATCH = "patch"  # a patch-embedding kernel's spatial and input-channel axes
BANK = "bank"  # the entries of a bank of tokens a model reads from (e.g. a tape bank)
SUBBLOCKS = "subblocks"  # the K sub-blocks of a widened representation (mixing weights)
BUCKETS = "buckets"  # T5's relative-position buckets
LAYERS = "layers"  # one value per layer (e.g. A-ViT's halting schedule)
UNSHARDED = "unsharded"  # a small axis never worth splitting (scalars' unit axes)

LOGICAL_AXES = (
    BATCH, LENGTH, EMBED, MLP, HEADS, KV, VOCAB, CLASSES, PATCH, BANK, SUBBLOCKS, BUCKETS, LAYERS,
    UNSHARDED,
)  # fmt: skip

DTYPES = ("float32", "bfloat16")


def param_init(init: Callable[..., Array], *names: str) -> Callable[..., Any]:
    """`init` whose parameter carries the logical axis `names` (one per dimension)."""
    unknown = [n for n in names if n not in LOGICAL_AXES]
    if unknown:
        raise ValueError(f"unknown logical axis names {unknown}; known: {LOGICAL_AXES}")
    return nn.with_logical_partitioning(init, names)


def dense(
    features: int,
    axes: tuple[str, str],
    *,
    dtype: Any = jnp.float32,
    kernel_init: Callable[..., Array] = nn.initializers.lecun_normal(),
    bias_init: Callable[..., Array] = nn.initializers.zeros,
    use_bias: bool = True,
    name: str | None = None,
) -> nn.Dense:
    """`nn.Dense` with a float32 kernel named `axes` (in, out) computing in `dtype`."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=param_init(kernel_init, *axes),
        bias_init=param_init(bias_init, axes[1]),
        name=name,
    )


def layer_norm(*, dtype: Any = jnp.float32, name: str | None = None, axis_name: str = EMBED):
    """`nn.LayerNorm` over the model width: float32 statistics and parameters, output in
    `dtype`."""
    return nn.LayerNorm(
        dtype=dtype,
        param_dtype=jnp.float32,
        scale_init=param_init(nn.initializers.ones, axis_name),
        bias_init=param_init(nn.initializers.zeros, axis_name),
        name=name,
    )


_MESH: contextvars.ContextVar[Any] = contextvars.ContextVar("constraint_mesh", default=None)


@contextlib.contextmanager
def constraint_mesh(mesh: Any) -> Iterator[None]:
    """Within: `constrain` places activations on `mesh` (entered while tracing a step,
    with the rules; see `framework.train.sharding.rules_context`)."""
    token = _MESH.set(mesh)
    try:
        yield
    finally:
        _MESH.reset(token)


def constrain(x: Array, *names: str | None) -> Array:
    """Constrains activation `x` to the sharding the rules give its logical `names`
    (a no-op outside `constraint_mesh` and the rules)."""
    mesh = _MESH.get()
    if mesh is None:
        return x
    return nn.with_logical_constraint(x, names, mesh=mesh)


def constrain_tokens(x: Array) -> Array:
    """A [batch, length, embed] activation at a block boundary."""
    return constrain(x, BATCH, LENGTH, EMBED)


# name -> jax.checkpoint policy (None: the whole block is recomputed, nothing saved).
REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "block": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat(block_cls: type[nn.Module], policy: str) -> type[nn.Module]:
    """`block_cls` with its `__call__` rematerialised under `REMAT_POLICIES[policy]`.

    The block keeps its name, parameters and call signature; its keyword `train` stays a
    static Python bool (dropout needs it), which `nn.remat` alone would trace.
    `policy='none'` returns `block_cls` unchanged.
    """
    if policy == "none":
        return block_cls
    if policy not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {policy!r}; known: {', '.join(REMAT_POLICIES)}")

    class TrainFirst(block_cls):  # type: ignore[misc, valid-type]
        def __call__(self, train, *args, **kwargs):
            return super().__call__(*args, train=train, **kwargs)

    lifted = nn.remat(TrainFirst, static_argnums=(1,), policy=REMAT_POLICIES[policy])

    class Rematerialised(lifted):  # type: ignore[misc, valid-type]
        def __call__(self, *args, train: bool, **kwargs):
            return super().__call__(train, *args, **kwargs)

    Rematerialised.__name__ = Rematerialised.__qualname__ = block_cls.__name__
    return Rematerialised


def add_precision_fields(config: ml_collections.ConfigDict) -> None:
    """Declares `dtype` (computation: float32 | bfloat16) and `remat` (a policy name)."""
    config.dtype = "float32"
    config.remat = "none"


def check_precision_fields(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming `config.model.dtype` / `.remat` if not a known name."""
    fields.check_one_of("config.model.dtype", config.dtype, DTYPES)
    fields.check_one_of("config.model.remat", config.remat, tuple(REMAT_POLICIES))


def compute_dtype(config: ml_collections.ConfigDict) -> Any:
    """The computation dtype `config.model.dtype` names."""
    return jnp.dtype(config.get("dtype", "float32"))
