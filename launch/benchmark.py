"""Side-by-side throughput: the framework's trainer against a bare jitted loop.

  python -m launch.benchmark --config=configs/parity/transformer.py [--steps=300]

Both step the same model on the same global batch size in one process, alternating
for `--rounds` rounds. The trainer runs with its data pipeline, logging and checkpoint
cadence as configured (eval is off: it is not training throughput); its time is taken
between its first and last log lines, so compilation is excluded as in the bare loop.
The bare loop steps one fixed on-device batch with `jax.jit` and nothing else.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import jax
import optax
from absl import flags

from framework import app
from framework.data import pipeline
from framework.train import optimizers, trainer

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 300, "Timed steps per round and side.")
flags.DEFINE_integer("rounds", 3, "Rounds; each runs both sides once.")


def bare_loop_steps_per_sec(config, steps: int) -> float:
    """Steps/s of a minimal jitted train step on one fixed batch (after compiling)."""
    config, mesh, _, dataset, model = trainer.build_experiment(config)
    tx, _ = optimizers.create(config)
    batch = pipeline.shard_batch(dataset.example_batch(), mesh)
    params = model.init(jax.random.key(config.seed), batch)
    opt_state = tx.init(params)

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

    step = jax.jit(step, donate_argnums=(0, 1))
    params, opt_state = step(params, opt_state, batch, 0)
    jax.block_until_ready(params)
    start = time.perf_counter()
    for i in range(steps):
        params, opt_state = step(params, opt_state, batch, i + 1)
    jax.block_until_ready(params)
    return steps / (time.perf_counter() - start)


def trainer_steps_per_sec(config, steps: int) -> float:
    with config.unlocked():
        # Keep the schedule of the full run; only the number of steps taken changes.
        config.lr.decay_steps = config.lr.decay_steps or config.num_train_steps
        config.num_train_steps = steps + config.log_every_steps
        config.eval_every_steps = 0
        config.compute_flops = False
    with tempfile.TemporaryDirectory() as workdir:
        result = trainer.train_and_evaluate(config, workdir)
    return result.timed_steps / result.timed_seconds


def main() -> None:
    config = app.config()
    bare, framework = [], []
    for round_index in range(FLAGS.rounds):
        bare.append(bare_loop_steps_per_sec(config.copy_and_resolve_references(), FLAGS.steps))
        framework.append(trainer_steps_per_sec(config.copy_and_resolve_references(), FLAGS.steps))
        print(
            f"round {round_index + 1}: bare {bare[-1]:.2f} steps/s, "
            f"trainer {framework[-1]:.2f} steps/s",
            flush=True,
        )
    b, t = statistics.median(bare), statistics.median(framework)
    print(
        f"{config.experiment_name}: batch {config.batch_size}, {jax.device_count()} "
        f"{jax.devices()[0].platform} device(s), median of {FLAGS.rounds} rounds"
    )
    print(f"bare jitted loop: {b:.2f} steps/s ({b * config.batch_size:.0f} examples/s)")
    print(f"framework trainer: {t:.2f} steps/s ({t * config.batch_size:.0f} examples/s)")
    print(f"trainer / bare-loop throughput ratio: {t / b:.3f}")


if __name__ == "__main__":
    app.run(main)
