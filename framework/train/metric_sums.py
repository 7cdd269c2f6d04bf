"""Metrics as per-example (numerator, denominator) pairs: summed under the batch mask on
the devices, divided on the host.

A ratio of sums counts every real example once, however the examples fall into batches
(the last eval batch's padding included), which a mean of per-batch means would not.
The train step, the eval step and the metrics evaluator share this one convention.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from framework.models import base


def masked_sums(pairs: Mapping[str, tuple[jax.Array, jax.Array]], mask: jax.Array):
    """`{name: [sum(num * mask), sum(den * mask)]}`."""
    return {
        k: jnp.stack([(num * mask).sum(), (den * mask).sum()]) for k, (num, den) in pairs.items()
    }


def metric_pairs(model: base.BaseModel, outputs, aux, batch) -> base.MetricPairs:
    """Model metrics + auxiliary losses/metrics/histograms as per-example pairs."""
    pairs = dict(model.metrics(outputs, batch))
    ones = jnp.ones_like(batch["mask"])
    for name, value in aux[base.AUX_LOSS].items():
        pairs[f"{base.AUX_LOSS}/{name}"] = (value, ones)
    for name, value in aux[base.AUX_METRICS].items():
        pairs[name] = (value, ones)
    for name, value in aux[base.AUX_HISTOGRAMS].items():
        pairs[name] = (value, ones)
        pairs[f"{name}_sq"] = (value**2, ones)
    return pairs


def ratios(sums: Mapping[str, np.ndarray]) -> dict[str, float]:
    """`num / den` of each summed pair (none where nothing was counted); a histogram's
    `<name>_sq` becomes its variance `<name>_var`."""
    out = {}
    for name, (num, den) in sums.items():
        if den > 0:
            out[name] = float(num) / float(den)
    for name in [n for n in out if n.endswith("_sq")]:
        mean_sq = out.pop(name)
        base_name = name[: -len("_sq")]
        out[f"{base_name}_var"] = max(mean_sq - out[base_name] ** 2, 0.0)
    return out


def with_total_loss(scalars: dict[str, float]) -> dict[str, float]:
    """Adds `total_loss` (the loss plus every auxiliary loss) when there are auxiliary losses."""
    aux = [v for k, v in scalars.items() if k.startswith(f"{base.AUX_LOSS}/")]
    if aux and "loss" in scalars:
        scalars["total_loss"] = scalars["loss"] + sum(aux)
    return scalars
