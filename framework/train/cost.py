"""What a model costs to run, as the compiler sees it: forward FLOPs per example.

Logged at the start of a run and kept in its record (`flops_per_example`), for the
tables' cost columns; the parameter count is `train_state.param_count`.
"""

from __future__ import annotations

from typing import Any

import jax

from framework.models import base


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
