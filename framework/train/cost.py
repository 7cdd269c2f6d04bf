"""What a model costs to run: forward FLOPs per example as the compiler sees them, and
a train step's FLOPs for model-FLOPs utilisation (MFU).

The forward count is logged at the start of a run and kept in its record
(`flops_per_example`), for the tables' cost columns; the parameter count is
`train_state.param_count`. A train step's FLOPs are the model's analytical count (3 x
forward, `BaseModel.analytical_flops`: the model FLOPs of MFU, without recomputation)
or, for a model without one, XLA's count of the compiled step.
"""

from __future__ import annotations

from typing import Any

import jax

from framework.models import base
from framework.train import chips


def forward_flops_per_example(model: base.BaseModel, abstract_params: Any, abstract_batch) -> float:
    """XLA's estimate of forward-pass FLOPs for one example (0 when unavailable).

    Compiled for one device without sharding, so the count is for the whole batch.
    """
    unsharded = lambda tree: jax.tree.map(  # noqa: E731
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree
    )
    fn = jax.jit(lambda p, b: model.apply(p, b, train=False)[0])
    try:
        lowered = fn.lower(unsharded(abstract_params), unsharded(abstract_batch))
        cost = lowered.compile().cost_analysis()
    except Exception:  # cost analysis is best-effort on some backends
        return 0.0
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    batch_size = next(iter(abstract_batch.values())).shape[0]
    return float((cost or {}).get("flops", 0.0)) / batch_size


def compiled_flops(compiled: Any) -> float | None:
    """XLA's FLOPs of a compiled program on one device (None where the backend has no
    cost analysis, e.g. GPUs)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # cost analysis is best-effort on some backends
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def analytical_train_flops(
    model: base.BaseModel, abstract_params: Any, abstract_batch
) -> float | None:
    """The model's training FLOPs for the global batch: 3 x its analytical forward count
    (forward, and backward at twice the forward), or None when it has no count."""
    forward = model.analytical_flops(abstract_params, abstract_batch)
    if not forward:
        return None
    batch_size = next(iter(abstract_batch.values())).shape[0]
    return 3.0 * forward * batch_size


def train_step_flops(
    model: base.BaseModel, abstract_params: Any, abstract_batch, compiled: Any, num_devices: int
) -> tuple[float | None, str]:
    """(FLOPs of one train step over all devices, where they come from): the analytical
    count, else XLA's count of the compiled step (which includes recomputation)."""
    analytical = analytical_train_flops(model, abstract_params, abstract_batch)
    if analytical:
        return analytical, "analytical"
    per_device = compiled_flops(compiled)
    return (per_device * num_devices, "xla") if per_device else (None, "none")


def utilisation(
    flops_per_step: float, steps_per_sec: float, num_devices: int, chip: chips.Chip
) -> float:
    """Model-FLOPs utilisation: the step's FLOPs per device per second over the chip's peak."""
    return chips.mfu(flops_per_step / num_devices, steps_per_sec, chip)
