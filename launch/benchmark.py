"""Side-by-side throughput, in one process, with the trainer's own train step.

  python -m launch.benchmark --config=configs/parity/transformer.py [--steps=300]
  python -m launch.benchmark --mode=altup [--size=small --batch_size=4 --steps=2]
  python -m launch.benchmark --mode=adatape [--batch_size=8 --image_size=224 --steps=3]
  python -m launch.benchmark --mode=decode [--size=small --batch_size=8 --decode_length=114]

`--mode=trainer` (default): the framework's trainer against a bare loop of the same
train step. Both step the config's experiment on its global batch size, alternating
for `--rounds` rounds. The trainer runs with its data pipeline, logging and checkpoint
cadence as configured (evaluation only after the timed steps); its time is taken
between its first and last log lines, so compilation is excluded as in the bare loop.
The bare loop steps the trainer's jitted train step on one fixed on-device batch
and nothing else, so the ratio is the cost of everything around the step.

`--mode=altup`: train-step time of the rows of the AltUp table (T5 dense, AltUp K=2,
Recycled-AltUp K=2, Sequence-AltUp stride 2, dense with 2x wide layers), each relative
to the dense T5, at `--size` (T5-Small by default) on random tokens of the paper's
shape (inputs 512, targets 114 tokens, T5's 32128-token vocabulary):
`configs/altup/t5.py:SIZE,VARIANT,data=random`, the paper's optimizer and schedule.

`--mode=adatape`: train-step time of AdaTape-ViT-S/16 against ViT-S/16 and UViT-S/16
(ACT) on random images, from their ImageNet configs.

`--mode=input --config=configs/baselines/vit.py:S/16`: the config's training input
pipeline (decode and augmentation as configured: at 224 px inception crop, flip and
RandAugment) in images/s for each of `--workers` grain worker processes (each with
`--threads_per_worker` reader threads, so that workers map onto cores), next to the
rate at which the config's model consumes images in its train step (the trainer's
jitted step on a pipeline batch), measured in the same run. Without ImageNet, point it
at any prepared data set, e.g. the generated JPEGs of
`python -m launch.prepare_data synthetic_images --name=synthetic_jpegs`.

`--mode=decode`: greedy decoding of `--decode_length` tokens (114 by default, the
paper's targets) with and without the key/value cache (`framework.models.t5.decoding`),
at `--size` (T5-Small by default, `configs/altup/t5.py:SIZE,VARIANT,data=random`) for
`--variant` dense | altup | recycled, batch `--batch_size` (8), `--inputs_length` random
encoder tokens, random parameters. EOS is disabled so that every decode emits exactly
`--decode_length` tokens. A decode is one jitted call (encoder once, then one step per
token); the uncached one reruns the decoder on the whole [B, decode_length] buffer at
every step. Both are compiled first (excluded), then timed in turns over `--rounds`.

Every mode times experiments built from configs exactly as `launch.train` builds
them (`framework.experiments.step_timing`), interleaved over rounds, and reports medians.
"""

from __future__ import annotations

import os
import statistics
import time

import jax
import ml_collections
from absl import flags

from framework import app
from framework.config import loader, registry, schema
from framework.data import pipeline
from framework.errors import ConfigError
from framework.experiments import step_timing, tables

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "mode",
    "trainer",
    ["trainer", "altup", "adatape", "input", "decode"],
    "What to compare (see above).",
)
flags.DEFINE_list("workers", ["1", "2"], "input: grain worker processes to time, in turn.")
flags.DEFINE_integer("batches", 20, "input: timed batches per worker count.")
flags.DEFINE_integer(
    "threads_per_worker", 1, "input: reader threads in each worker (dataset.num_threads)."
)
flags.DEFINE_integer(
    "steps", None, "Timed steps per round and side or model (default: trainer 300, altup 2, "
    "adatape 3)."
)  # fmt: skip
flags.DEFINE_integer("rounds", 3, "Rounds; each runs every side or model once.")
flags.DEFINE_string(
    "profile_dir",
    None,
    "altup / adatape: after timing, trace --steps more steps of each "
    "model with jax.profiler into DIR/<model slug> (TensorBoard profile / Perfetto).",
)
flags.DEFINE_string("size", "small", "altup / decode: T5 size (tiny | mini | small | base | ...).")
flags.DEFINE_integer(
    "batch_size", None, "altup / adatape / decode: global batch size (default 4 / 8 / 8)."
)
flags.DEFINE_integer("image_size", 224, "adatape: image size in pixels.")
flags.DEFINE_integer("inputs_length", 512, "altup / decode: encoder tokens per example.")
flags.DEFINE_integer("targets_length", 114, "altup: decoder tokens per example.")
flags.DEFINE_integer("vocab_size", 32128, "altup / decode: vocabulary size.")
flags.DEFINE_integer("decode_length", 114, "decode: tokens decoded per example.")
flags.DEFINE_enum(
    "variant", "dense", ["dense", "altup", "recycled"], "decode: the model (K=2 for AltUp)."
)
flags.DEFINE_list(
    "rows",
    None,
    "altup: only these rows of the AltUp table, by slug (e.g. t5_dense,"
    "altup_k_2_sum_readout; default: all).",
)

ADATAPE_MODELS = {
    "ViT-S/16": "configs/baselines/vit.py:S/16,data=random",
    "UViT-S/16 (ACT)": "configs/baselines/uvit.py:S/16,data=random",
    "AdaTape-ViT-S/16": "configs/adatape/imagenet.py:S/16,data=random",
}


def _platform() -> str:
    return f"{jax.device_count()} {jax.devices()[0].platform} device(s)"


def _with_batch_size(config: ml_collections.ConfigDict, batch_size: int):
    with config.unlocked():
        config.batch_size = batch_size
        config.eval_batch_size = batch_size
    return config


def _compare(configs: dict[str, ml_collections.ConfigDict], steps: int, reference: str) -> None:
    """Times `configs` side by side and prints the table and per-round times."""
    results = step_timing.interleaved_step_times(
        configs, steps, FLAGS.rounds, reference, profile_dir=FLAGS.profile_dir
    )
    print(step_timing.format_step_times(results, reference))
    for r in results.values():
        rounds = ", ".join(f"{t * 1e3:.0f}" for t in r.rounds)
        print(f"{r.name}: compile + 1 step {r.compile_seconds:.1f} s, step ms per round [{rounds}]")


def trainer_mode(steps: int) -> None:
    """The trainer against a bare loop of its own train step, on `--config`."""
    config = app.config()
    if config is None:
        raise ConfigError("--config is required with --mode=trainer")
    bare, framework = [], []
    loop = step_timing.bare_loop(config.copy_and_resolve_references())
    for round_index in range(FLAGS.rounds):
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
        f"{config.experiment_name}: batch {config.batch_size}, {_platform()}, "
        f"median of {FLAGS.rounds} rounds of {steps} steps"
    )
    print(f"bare loop of the train step: {b:.2f} steps/s ({b * config.batch_size:.0f} examples/s)")
    print(f"framework trainer: {t:.2f} steps/s ({t * config.batch_size:.0f} examples/s)")
    print(f"trainer / bare-loop throughput ratio (median over rounds): {ratio:.3f}")


def altup_mode(steps: int) -> None:
    """Step times of the AltUp table's rows at `--size`, relative to dense."""
    from projects.altup import paper_tables

    batch_size = FLAGS.batch_size or 4
    by_slug = {tables.slugify(name): name for name in paper_tables.ROWS}
    wanted = set(FLAGS.rows or by_slug)
    unknown = sorted(wanted - set(by_slug))
    if unknown or tables.slugify(paper_tables.DENSE) not in wanted:
        raise ConfigError(
            f"--rows must name t5_dense and other rows of the AltUp table; unknown: "
            f"{', '.join(unknown) or 'none'}; known: {', '.join(by_slug)}"
        )
    configs = {}
    for name in (name for slug, name in by_slug.items() if slug in wanted):
        variant = paper_tables.ROWS[name]
        config = loader.load_config(
            f"{paper_tables.CONFIG}:{FLAGS.size},{variant},data=random"
        )
        config.dataset.inputs_length = FLAGS.inputs_length
        config.dataset.targets_length = FLAGS.targets_length
        config.dataset.vocab_size = FLAGS.vocab_size
        configs[name] = _with_batch_size(config, batch_size)
    print(
        f"T5-{FLAGS.size}: batch {batch_size}, inputs {FLAGS.inputs_length}, targets "
        f"{FLAGS.targets_length}, vocabulary {FLAGS.vocab_size}; {_platform()}; "
        f"{FLAGS.rounds} rounds of {steps} steps",
        flush=True,
    )
    _compare(configs, steps, paper_tables.DENSE)


def adatape_mode(steps: int) -> None:
    """Step times of AdaTape-ViT-S/16, ViT-S/16 and UViT-S/16 on random images."""
    batch_size = FLAGS.batch_size or 8
    configs = {}
    for name, spec in ADATAPE_MODELS.items():
        config = loader.load_config(spec)
        config.dataset.image_size = FLAGS.image_size
        configs[name] = _with_batch_size(config, batch_size)
    print(
        f"batch {batch_size}, {FLAGS.image_size} px random images, {_platform()}; "
        f"{FLAGS.rounds} rounds of {steps} steps",
        flush=True,
    )
    _compare(configs, steps, "ViT-S/16")


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


def input_mode(steps: int) -> None:
    """Input-pipeline images/s for each worker count beside the model's consumption rate."""
    config = app.config()
    if config is None:
        raise ConfigError("--config is required with --mode=input")
    config = config.copy_and_resolve_references()
    workers = [int(w) for w in FLAGS.workers]
    print(
        f"{config.experiment_name}: {config.dataset.get('tfds_name', config.dataset_name)}, "
        f"batch {config.batch_size}, pp_train {config.dataset.get('pp_train', '-')!r}, "
        f"{os.cpu_count()} CPUs, {_platform()}",
        flush=True,
    )
    rates = {}
    for n in workers:
        rates[n], first = pipeline_images_per_sec(config, n, FLAGS.batches)
        print(f"input pipeline, {n} worker(s): {rates[n]:.1f} images/s "
              f"(first batch after {first:.1f} s)", flush=True)  # fmt: skip
    loop = step_timing.bare_loop(config)
    step_seconds = statistics.median(loop.run(steps) for _ in range(FLAGS.rounds))
    consumed = config.batch_size / step_seconds
    print(f"model train step: {consumed:.1f} images/s ({step_seconds * 1e3:.0f} ms per step)")
    if len(workers) > 1:
        lo, hi = workers[0], workers[-1]
        print(f"speed-up from {lo} to {hi} workers: {rates[hi] / rates[lo]:.2f}x")
    best = max(rates.values())
    print(f"pipeline / model rate: {best / consumed:.2f} (>= 1: the input keeps up)")


def decode_mode(steps: int) -> None:
    """Greedy decoding with and without the key/value cache, timed in turns."""
    import jax.numpy as jnp
    import numpy as np

    from framework.models.t5 import decoding

    batch_size = FLAGS.batch_size or 8
    config = loader.load_config(
        f"configs/altup/t5.py:{FLAGS.size},{FLAGS.variant},data=random"
    )
    model = registry.MODELS.get(config.model_name)(config.model, {"vocab_size": FLAGS.vocab_size})
    shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 4)}
    shapes["decoder_target_tokens"] = shapes["decoder_input_tokens"]
    small = {name: jnp.ones(shape, jnp.int32) for name, shape in shapes.items()}
    params = jax.jit(model.init)(jax.random.key(0), small)  # shapes do not depend on lengths
    rng = np.random.default_rng(0)
    inputs = rng.integers(2, FLAGS.vocab_size, (batch_size, FLAGS.inputs_length))
    inputs = jax.device_put(inputs.astype(np.int32))
    length = FLAGS.decode_length

    def greedy(use_cache: bool):
        return lambda: decoding.jit_greedy_decode(
            model.module, params, inputs, max_length=length, use_cache=use_cache, eos_id=-1
        )

    print(
        f"T5-{FLAGS.size} {FLAGS.variant}: greedy decoding of {length} tokens, batch "
        f"{batch_size}, {FLAGS.inputs_length} random encoder tokens, vocabulary "
        f"{FLAGS.vocab_size}; {_platform()}; {FLAGS.rounds} rounds of {steps} decode(s)",
        flush=True,
    )
    encode = jax.jit(decoding.encode, static_argnums=0)
    loops = {
        "cached": step_timing.call_loop(greedy(True)),
        "uncached": step_timing.call_loop(greedy(False)),
        "encoder alone": step_timing.call_loop(lambda: encode(model.module, params, inputs)),
    }
    for name, loop in loops.items():
        print(f"{name}: compile + first call {loop.compile_seconds:.1f} s", flush=True)
    same = np.array_equal(loops["cached"].first_output, loops["uncached"].first_output)
    times = step_timing.interleaved_seconds(loops, steps, FLAGS.rounds)
    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    speedup = statistics.median(u / c for u, c in zip(times["uncached"], times["cached"]))
    print("| decoding | ms per decode | tokens/s | speed-up of the cache |")
    print("|---|---|---|---|")
    for name, ratio in (("cached", f"{speedup:.1f}x"), ("uncached", "1.0x")):
        seconds = median[name]
        print(f"| {name} | {seconds * 1e3:.0f} | {batch_size * length / seconds:.0f} | {ratio} |")
    print(f"| encoder alone (in both) | {median['encoder alone'] * 1e3:.0f} | | |")
    for name, seconds in times.items():
        rounds = ", ".join(f"{t * 1e3:.0f}" for t in seconds)
        print(f"{name}: ms per call per round [{rounds}]")
    encoder = median["encoder alone"]
    loop_cached, loop_uncached = median["cached"] - encoder, median["uncached"] - encoder
    print(
        f"decoder loop without the encoder: cached {loop_cached * 1e3:.0f} ms, uncached "
        f"{loop_uncached * 1e3:.0f} ms ({loop_uncached / loop_cached:.1f}x); cached and "
        f"uncached tokens identical: {same}"
    )


MODES = {
    "trainer": (trainer_mode, 300),
    "altup": (altup_mode, 2),
    "adatape": (adatape_mode, 3),
    "input": (input_mode, 3),
    "decode": (decode_mode, 1),
}


def main() -> None:
    run_mode, default_steps = MODES[FLAGS.mode]
    run_mode(FLAGS.steps or default_steps)


if __name__ == "__main__":
    app.run(main)
