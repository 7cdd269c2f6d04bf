"""Side-by-side throughput, in one process, with the trainer's own train step.

  python -m launch.benchmark --config=configs/parity/transformer.py [--steps=300]
  python -m launch.benchmark --mode=input --config=configs/baselines/vit.py:S/16
  python -m launch.benchmark --mode=NAME [--size=... --batch_size=... --steps=...]

`--mode=trainer` (default): the framework's trainer against a bare loop of the same
train step. Both step the config's experiment on its global batch size, alternating
for `--rounds` rounds. The trainer runs with its data pipeline, logging and checkpoint
cadence as configured (evaluation only after the timed steps); its time is taken
between its first and last log lines, so compilation is excluded as in the bare loop.
The bare loop steps the trainer's jitted train step on one fixed on-device batch
and nothing else, so the ratio is the cost of everything around the step.

`--mode=input --config=configs/baselines/vit.py:S/16`: the config's training input
pipeline (decode and augmentation as configured: at 224 px inception crop, flip and
RandAugment) in images/s for each of `--workers` grain worker processes (each with
`--threads_per_worker` reader threads, so that workers map onto cores), next to the
rate at which the config's model consumes images in its train step (the trainer's
jitted step on a pipeline batch), measured in the same run. Without ImageNet, point it
at any prepared data set, e.g. the generated JPEGs of
`python -m launch.prepare_data synthetic_images --name=synthetic_jpegs`.

Any other `--mode` is one that a project registers in
`framework.config.registry.BENCHMARKS` (its module's docstring says what it times and
which of the generic flags below it reads); an unknown mode is a one-line error listing
the known ones. A mode gets the flags as a `step_timing.BenchmarkArgs`.

Every mode times experiments built from configs exactly as `launch.train` builds
them (`framework.experiments.step_timing`), interleaved over rounds, and reports medians.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time

import ml_collections
from absl import flags

from framework import app
from framework.config import registry, schema
from framework.data import pipeline
from framework.errors import ConfigError
from framework.experiments import step_timing
from framework.experiments.step_timing import BenchmarkArgs

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "mode", "trainer", "What to compare: trainer, input, or a mode a project registers."
)
flags.DEFINE_list("workers", ["1", "2"], "input: grain worker processes to time, in turn.")
flags.DEFINE_integer("batches", 20, "input: timed batches per worker count.")
flags.DEFINE_integer(
    "threads_per_worker", 1, "input: reader threads in each worker (dataset.num_threads)."
)
flags.DEFINE_integer(
    "steps", None, "Timed steps (or calls) per round and side or model (default: the mode's; "
    "trainer 300, input 3)."
)  # fmt: skip
flags.DEFINE_integer("rounds", 3, "Rounds; each runs every side or model once.")
flags.DEFINE_string(
    "profile_dir",
    None,
    "Modes that compare models: after timing, trace --steps more steps of each model "
    "with jax.profiler into DIR/<model slug> (TensorBoard profile / Perfetto).",
)
# Generic knobs of the registered modes; unset, each mode uses its own default.
flags.DEFINE_string("size", None, "The model size a mode builds.")
flags.DEFINE_string("variant", None, "The model variant, for modes that time one.")
flags.DEFINE_integer("batch_size", None, "Global batch size.")
flags.DEFINE_integer("image_size", None, "Image size in pixels.")
flags.DEFINE_integer("inputs_length", None, "Encoder tokens per example.")
flags.DEFINE_integer("targets_length", None, "Decoder tokens per example.")
flags.DEFINE_integer("vocab_size", None, "Vocabulary size.")
flags.DEFINE_integer("decode_length", None, "Tokens decoded per example.")
flags.DEFINE_enum("decode_method", "greedy", ["greedy", "beam"], "How decoding modes decode.")
flags.DEFINE_list("rows", None, "Only these rows of a mode's table, by slug (default: all).")


def benchmark_args() -> BenchmarkArgs:
    """The flags a registered mode reads (each field of `BenchmarkArgs` is a flag)."""
    values = {field.name: FLAGS[field.name].value for field in dataclasses.fields(BenchmarkArgs)}
    values["rows"] = tuple(values["rows"]) if values["rows"] else None
    return BenchmarkArgs(**values)


@registry.BENCHMARKS.register("trainer")
def trainer_mode(args: BenchmarkArgs) -> None:
    """The trainer against a bare loop of its own train step, on `--config`."""
    config = app.config()
    if config is None:
        raise ConfigError("--config is required with --mode=trainer")
    steps = args.steps or 300
    bare, framework = [], []
    loop = step_timing.bare_loop(config.copy_and_resolve_references())
    for round_index in range(args.rounds):
        bare.append(1.0 / loop.run(steps))
        framework.append(
            step_timing.trainer_steps_per_sec(config.copy_and_resolve_references(), steps)
        )
        print(
            f"round {round_index + 1}: bare {bare[-1]:.2f} steps/s, "
            f"trainer {framework[-1]:.2f} steps/s",
            flush=True,
        )
    b, t = statistics.median(bare), statistics.median(framework)
    ratio = statistics.median(ti / bi for ti, bi in zip(framework, bare))
    print(
        f"{config.experiment_name}: batch {config.batch_size}, {step_timing.platform()}, "
        f"median of {args.rounds} rounds of {steps} steps"
    )
    print(f"bare loop of the train step: {b:.2f} steps/s ({b * config.batch_size:.0f} examples/s)")
    print(f"framework trainer: {t:.2f} steps/s ({t * config.batch_size:.0f} examples/s)")
    print(f"trainer / bare-loop throughput ratio (median over rounds): {ratio:.3f}")


def pipeline_images_per_sec(
    config: ml_collections.ConfigDict, num_workers: int, batches: int
) -> tuple[float, float]:
    """(images/s over `batches` training batches after the first, seconds to the first)."""
    config = schema.resolve(config)
    with config.unlocked():
        config.dataset.num_workers = num_workers
        config.dataset.num_threads = FLAGS.threads_per_worker
    split = pipeline.HostSplit(config.batch_size, config.eval_batch_size)
    dataset = registry.DATASETS.get(config.dataset_name)(config.dataset, split, config.seed)
    start = time.perf_counter()
    iterator = dataset.train_batches(0)
    next(iterator)  # starts the workers and fills their buffers
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    rate = batches * config.batch_size / (time.perf_counter() - start)
    del iterator
    return rate, first


@registry.BENCHMARKS.register("input")
def input_mode(args: BenchmarkArgs) -> None:
    """Input-pipeline images/s for each worker count beside the model's consumption rate."""
    config = app.config()
    if config is None:
        raise ConfigError("--config is required with --mode=input")
    config = config.copy_and_resolve_references()
    workers = [int(w) for w in FLAGS.workers]
    print(
        f"{config.experiment_name}: {config.dataset.get('tfds_name', config.dataset_name)}, "
        f"batch {config.batch_size}, pp_train {config.dataset.get('pp_train', '-')!r}, "
        f"{os.cpu_count()} CPUs, {step_timing.platform()}",
        flush=True,
    )
    rates = {}
    for n in workers:
        rates[n], first = pipeline_images_per_sec(config, n, FLAGS.batches)
        print(f"input pipeline, {n} worker(s): {rates[n]:.1f} images/s "
              f"(first batch after {first:.1f} s)", flush=True)  # fmt: skip
    loop = step_timing.bare_loop(config)
    steps = args.steps or 3
    step_seconds = statistics.median(loop.run(steps) for _ in range(args.rounds))
    consumed = config.batch_size / step_seconds
    print(f"model train step: {consumed:.1f} images/s ({step_seconds * 1e3:.0f} ms per step)")
    if len(workers) > 1:
        lo, hi = workers[0], workers[-1]
        print(f"speed-up from {lo} to {hi} workers: {rates[hi] / rates[lo]:.2f}x")
    best = max(rates.values())
    print(f"pipeline / model rate: {best / consumed:.2f} (>= 1: the input keeps up)")


def main() -> None:
    registry.BENCHMARKS.get(FLAGS.mode)(benchmark_args())


if __name__ == "__main__":
    app.run(main)
