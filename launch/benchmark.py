"""Side-by-side throughput, in one process.

  python -m launch.benchmark --config=configs/parity/transformer.py [--steps=300]
  python -m launch.benchmark --mode=altup [--size=small --batch_size=4 --steps=2]
  python -m launch.benchmark --mode=adatape [--batch_size=8 --image_size=224 --steps=3]

`--mode=trainer` (default): the framework's trainer against a bare jitted loop. Both
step the same model on the same global batch size, alternating for `--rounds` rounds.
The trainer runs with its data pipeline, logging and checkpoint cadence as configured
(eval is off: it is not training throughput); its time is taken between its first and
last log lines, so compilation is excluded as in the bare loop. The bare loop steps
one fixed on-device batch with `jax.jit` and nothing else.

`--mode=altup`: train-step time of T5 + AltUp K=2, Recycled-AltUp K=2, Sequence-AltUp
(stride 2) and a dense T5 with 2x wide layers (d_model, d_ff, heads doubled), each
relative to the dense T5 of the same size (T5-Small by default), on a random batch of
the paper's shape (inputs 512, targets 114 tokens, 32128-token vocabulary). Every
model is jitted (forward, backward, Adafactor) and timed `--steps` steps per round,
the models interleaved over `--rounds` rounds (`projects.altup.benchmark.step_times`).

`--mode=adatape`: train throughput of AdaTape-ViT-S/16 against ViT-S/16 and
UViT-S/16 (ACT) on random images, each a bare jitted step built from its config
(`projects.adatape.benchmark`), interleaved over rounds.
"""

from __future__ import annotations

import statistics
import tempfile

import jax
from absl import flags

from framework import app, step_timing
from framework.errors import ConfigError
from framework.train import trainer

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "mode", "trainer", ["trainer", "altup", "adatape"], "What to compare (see above)."
)
flags.DEFINE_integer(
    "steps", 300, "Timed steps per round and side (trainer) or model (altup: default 2)."
)
flags.DEFINE_integer("rounds", 3, "Rounds; each runs every side once.")
flags.DEFINE_string("size", "small", "altup: T5 size (tiny | mini | small | base | ...).")
flags.DEFINE_integer("batch_size", None, "altup / adatape: batch size (default 4 / 8).")
flags.DEFINE_integer("image_size", 224, "adatape: image size in pixels.")
flags.DEFINE_integer("inputs_length", 512, "altup: encoder tokens per example.")
flags.DEFINE_integer("targets_length", 114, "altup: decoder tokens per example.")
flags.DEFINE_integer("vocab_size", 32128, "altup: vocabulary size.")

ALTUP_STEPS = 2  # --steps default in altup mode


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


def altup_main() -> None:
    """Step times of the AltUp variants and a 2x-wide dense T5, relative to dense."""
    from projects.altup import benchmark

    batch_size = FLAGS.batch_size or 4
    configs = benchmark.t5_small_configs()
    for config in configs.values():
        config.size = FLAGS.size
    configs["dense_2x_wide"] = benchmark.widen(configs["dense"])
    steps = FLAGS.steps if FLAGS["steps"].present else ALTUP_STEPS
    print(
        f"T5-{FLAGS.size}: batch {batch_size}, inputs {FLAGS.inputs_length}, targets "
        f"{FLAGS.targets_length}, vocabulary {FLAGS.vocab_size}; {jax.device_count()} "
        f"{jax.devices()[0].platform} device(s); {FLAGS.rounds} rounds of {steps} steps",
        flush=True,
    )
    results = benchmark.step_times(
        configs,
        batch_size=batch_size,
        inputs_length=FLAGS.inputs_length,
        targets_length=FLAGS.targets_length,
        vocab_size=FLAGS.vocab_size,
        steps=steps,
        rounds=FLAGS.rounds,
        reference="dense",
    )
    print(benchmark.format_table(results))
    for r in results.values():
        rounds = ", ".join(f"{t * 1e3:.0f}" for t in r.rounds_s)
        print(f"{r.name}: compile {r.compile_s:.1f} s, per-round step ms [{rounds}]")
    print(
        "step time relative to dense: "
        + ", ".join(f"{r.name} {r.relative:.2f}" for r in results.values() if r.name != "dense")
    )


def adatape_main() -> None:
    """Train throughput of AdaTape-ViT-S/16 against ViT-S/16 and UViT-S/16."""
    from projects.adatape import benchmark

    batch_size = FLAGS.batch_size or 8
    steps = FLAGS.steps if FLAGS["steps"].present else 3
    print(
        f"batch {batch_size}, {FLAGS.image_size} px random images, {jax.device_count()} "
        f"{jax.devices()[0].platform} device(s); median of {FLAGS.rounds} rounds of "
        f"{steps} steps, models interleaved",
        flush=True,
    )
    print(benchmark.run(batch_size, FLAGS.image_size, steps, FLAGS.rounds))


def main() -> None:
    if FLAGS.mode == "altup":
        altup_main()
        return
    if FLAGS.mode == "adatape":
        adatape_main()
        return
    config = app.config()
    if config is None:
        raise ConfigError("--config is required with --mode=trainer")
    bare, framework = [], []
    loop = step_timing.bare_loop(config.copy_and_resolve_references())
    for round_index in range(FLAGS.rounds):
        bare.append(1.0 / loop.run(FLAGS.steps))
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
