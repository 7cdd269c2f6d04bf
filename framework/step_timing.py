"""Side-by-side step timing: bare jitted train steps of several experiments in one process.

Each experiment is built from its config exactly as the trainer builds it (dataset,
model, optimizer), then stepped on one fixed batch with a minimal jitted step
(forward, backward, optimizer update, nothing else). Timings are interleaved over
rounds, so a machine's drift affects every experiment alike; the median is reported.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Mapping

import jax
import ml_collections
import optax
from jax.sharding import NamedSharding, PartitionSpec

from framework.data import pipeline
from framework.train import optimizers, trainer


@dataclasses.dataclass
class BareLoop:
    """A compiled minimal train step with its state and one on-device batch."""

    step: Callable[..., Any]
    params: Any
    opt_state: Any
    batch: dict[str, jax.Array]
    num_params: int
    batch_size: int
    step_index: int = 0

    def run(self, steps: int) -> float:
        """Takes `steps` steps; returns seconds per step."""
        jax.block_until_ready(self.params)
        start = time.perf_counter()
        for _ in range(steps):
            self.step_index += 1
            self.params, self.opt_state = self.step(
                self.params, self.opt_state, self.batch, self.step_index
            )
        jax.block_until_ready(self.params)
        return (time.perf_counter() - start) / steps


def bare_loop(config: ml_collections.ConfigDict) -> BareLoop:
    """Builds `config`'s model, optimizer and one batch; compiles the step once."""
    config, mesh, _, dataset, model = trainer.build_experiment(config)
    tx, _ = optimizers.create(config)
    batch = pipeline.shard_batch(dataset.example_batch(), mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    params = jax.device_put(model.init(jax.random.key(config.seed), batch), replicated)

    def step(params, opt_state, batch, step_index):
        rng = jax.random.fold_in(jax.random.key(config.seed), step_index)

        def loss_fn(p):
            outputs, aux = model.apply(p, batch, train=True, rng=rng)
            num, den = model.metrics(outputs, batch)["loss"]
            mask = batch["mask"]
            aux_loss = sum((v * mask).sum() for v in aux["aux_loss"].values()) / mask.sum()
            return (num * mask).sum() / (den * mask).sum() + aux_loss

        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    loop = BareLoop(
        jax.jit(step, donate_argnums=(0, 1)),
        params,
        tx.init(params),
        batch,
        sum(x.size for x in jax.tree.leaves(params)),
        config.batch_size,
    )
    loop.run(2)  # compile (the first step's outputs could differ in layout from inputs)
    return loop


def interleaved_step_times(
    configs: Mapping[str, ml_collections.ConfigDict], steps: int, rounds: int
) -> dict[str, dict[str, float]]:
    """{name: {seconds_per_step, examples_per_sec, num_params}}, medians over rounds."""
    loops = {name: bare_loop(config) for name, config in configs.items()}
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            times[name].append(loop.run(steps))
    out = {}
    for name, loop in loops.items():
        seconds = statistics.median(times[name])
        out[name] = {
            "seconds_per_step": seconds,
            "examples_per_sec": loop.batch_size / seconds,
            "num_params": float(loop.num_params),
        }
    return out
