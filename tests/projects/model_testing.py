"""Helpers for model tests: build a registered model on its dataset, take a gradient."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from framework.config import schema
from framework.data.pipeline import HostSplit
from framework.models import base
from framework.train import steps


def build(model_name: str, dataset_name: str, batch_size: int = 4, dataset=None, **model):
    """(model, batch) for a registered model with dataset and model field overrides."""
    config = schema.base_config(model_name=model_name, dataset_name=dataset_name)
    for key, value in (dataset or {}).items():
        config.dataset[key] = value
    for key, value in model.items():
        config.model[key] = value
    data = schema.dataset_class(dataset_name)(
        config.dataset, HostSplit(batch_size, batch_size), seed=0
    )
    batch = {k: jnp.asarray(v) for k, v in data.example_batch().items()}
    return schema.model_class(model_name)(config.model, data.meta), batch


def randomize_head(params: Any, rng: int = 0) -> Any:
    """A random head kernel: the zero-initialised one stops every gradient below it."""
    head = dict(params["classifier"]["head"])
    head["kernel"] = 0.5 * jax.random.normal(jax.random.key(rng), head["kernel"].shape)
    return {**params, "classifier": {"head": head}}


def init_and_grads(model: base.BaseModel, batch, random_head: bool = True):
    """Initial parameters, the trainer's training loss (task + auxiliary) there, its
    gradient and the auxiliaries, all in one compiled program (compiling is what tests
    wait for)."""
    loss_fn = steps.make_loss_fn(model)

    def run():
        params = model.init(jax.random.key(0, impl="rbg"), batch)  # compiles faster
        if random_head:
            params = randomize_head(params)
        (loss, (_, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch, jax.random.key(1)
        )
        return params, loss, grads, aux

    return jax.jit(run)()


def grad_norm(grads: Any, *path: str) -> float:
    """Largest |gradient| under a parameter path (keys in order)."""
    node = grads
    for key in path:
        node = node[key]
    leaves = [np.abs(np.asarray(x)).max() for x in jax.tree.leaves(node)]
    assert all(np.isfinite(leaves)), path
    return float(max(leaves))


def all_finite(tree: Any) -> bool:
    return all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(tree))
