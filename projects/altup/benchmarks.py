"""AltUp's `launch.benchmark` modes: train-step times of the table's rows, and decoding.

  python -m launch.benchmark --mode=altup [--size=small --batch_size=4 --steps=2]
  python -m launch.benchmark --mode=decode [--size=small --variant=dense --batch_size=8]

`--mode=altup`: train-step time of the rows of the AltUp table (T5 dense, AltUp K=2,
Recycled-AltUp K=2, Sequence-AltUp stride 2, dense with 2x wide layers; `--rows` picks
some by slug), each relative to the dense T5, at `--size` (T5-Small by default) on
random tokens of the paper's shape (`--inputs_length` 512, `--targets_length` 114
tokens, T5's 32128-token vocabulary): `configs/altup/t5.py:SIZE,VARIANT,data=random`,
the paper's optimizer and schedule. Batch `--batch_size` (4), `--steps` (2) per round.

`--mode=decode`: decoding (`--decode_method`, greedy by default) of `--decode_length`
tokens (114, the paper's targets) with and without the key/value cache, for
`--variant` dense | altup | recycled (K=2) at `--size`, batch `--batch_size` (8) of
`--inputs_length` random encoder tokens, the config's initial parameters. The model,
parameters and batch are built as `launch.train` builds them
(`experiment.build_experiment`), and a decode is the sharded call evaluation makes
(`decoding.decode_batch` on the batch laid out over the mesh's data axis): the
encoder once, then one step per token; the uncached one reruns the decoder on the
whole [B, decode_length] buffer at every step. EOS is disabled so that every decode
emits exactly `--decode_length` tokens. Both are compiled and warmed up first
(excluded), then timed in turns over `--rounds`.
"""

from __future__ import annotations

import statistics
from typing import Any

import jax
import numpy as np

from framework.config import loader, registry
from framework.data import pipeline
from framework.errors import ConfigError
from framework.experiments import step_timing, tables
from framework.experiments.step_timing import BenchmarkArgs, TimedLoop
from framework.models.t5 import decode_steps, decoding
from framework.train import experiment as experiment_lib
from projects.altup import paper_tables

# The paper's T5-Small pre-training shapes (random tokens).
SIZE, INPUTS_LENGTH, TARGETS_LENGTH, VOCAB_SIZE = "small", 512, 114, 32128
DECODE_VARIANTS = ("dense", "altup", "recycled")  # the ones with a cached decode step
NO_EOS = -1  # a token id never emitted: every decode runs to its full length


def _config(args: BenchmarkArgs, variant: str, batch_size: int, **overrides: Any):
    """`configs/altup/t5.py:SIZE,VARIANT,data=random` at the benchmark's shapes."""
    return loader.load_config(
        f"{paper_tables.CONFIG}:{args.size or SIZE},{variant},data=random",
        batch_size=batch_size,
        eval_batch_size=batch_size,
        **{
            "dataset.inputs_length": args.inputs_length or INPUTS_LENGTH,
            "dataset.vocab_size": args.vocab_size or VOCAB_SIZE,
            **overrides,
        },
    )


@registry.BENCHMARKS.register("altup")
def altup_mode(args: BenchmarkArgs) -> None:
    """Step times of the AltUp table's rows at `args.size`, relative to dense."""
    batch_size, steps = args.batch_size or 4, args.steps or 2
    targets_length = args.targets_length or TARGETS_LENGTH
    by_slug = {tables.row_slug(name): name for name in paper_tables.ROWS}
    wanted = set(args.rows or by_slug)
    unknown = sorted(wanted - set(by_slug))
    if unknown or tables.row_slug(paper_tables.DENSE) not in wanted:
        raise ConfigError(
            f"--rows must name t5_dense and other rows of the AltUp table; unknown: "
            f"{', '.join(unknown) or 'none'}; known: {', '.join(by_slug)}"
        )
    configs = {
        name: _config(
            args,
            paper_tables.ROWS[name],
            batch_size,
            **{"dataset.targets_length": targets_length},
        )
        for slug, name in by_slug.items()
        if slug in wanted
    }
    print(
        f"T5-{args.size or SIZE}: batch {batch_size}, inputs "
        f"{args.inputs_length or INPUTS_LENGTH}, targets {targets_length}, vocabulary "
        f"{args.vocab_size or VOCAB_SIZE}; {step_timing.platform()}; "
        f"{args.rounds} rounds of {steps} steps",
        flush=True,
    )
    step_timing.print_comparison(configs, steps, args, paper_tables.DENSE)


def decode_loops(
    args: BenchmarkArgs,
) -> tuple[experiment_lib.Experiment, Any, dict[str, TimedLoop]]:
    """(experiment, its initial parameters, compiled loops `cached`, `uncached` and
    `encoder alone`) of the decode mode; a decode loop's `output` is its tokens."""
    variant = args.variant or "dense"
    if variant not in DECODE_VARIANTS:
        raise ConfigError(f"--variant={variant}: --mode=decode takes {' | '.join(DECODE_VARIANTS)}")
    batch_size = args.batch_size or 8
    experiment = experiment_lib.build_experiment(_config(args, variant, batch_size))
    model, params = experiment.model, experiment.init_state().params
    batch = pipeline.shard_batch(experiment.example_batch, experiment.mesh)
    length = args.decode_length or TARGETS_LENGTH

    def decode(use_cache: bool):
        return lambda: decoding.decode_batch(
            model,
            params,
            batch,
            length,
            method=args.decode_method,
            use_cache=use_cache,
            eos_id=NO_EOS,
        )

    encode = jax.jit(decode_steps.encode, static_argnums=0)
    loops = {
        "cached": step_timing.timed_loop(decode(True), batch_size),
        "uncached": step_timing.timed_loop(decode(False), batch_size),
        "encoder alone": step_timing.timed_loop(
            lambda: encode(model.module, params, batch["encoder_input_tokens"]), batch_size
        ),
    }
    return experiment, params, loops


@registry.BENCHMARKS.register("decode")
def decode_mode(args: BenchmarkArgs) -> None:
    """Decoding with and without the key/value cache, timed in turns."""
    steps = args.steps or 1
    experiment, _, loops = decode_loops(args)
    config, length = experiment.config, args.decode_length or TARGETS_LENGTH
    batch_size = config.batch_size
    print(
        f"T5-{args.size or SIZE} {args.variant or 'dense'}: {args.decode_method} decoding of "
        f"{length} tokens, batch {batch_size}, {config.dataset.inputs_length} random encoder "
        f"tokens, vocabulary {config.dataset.vocab_size}; {step_timing.platform()}; "
        f"{args.rounds} rounds of {steps} decode(s)",
        flush=True,
    )
    for name, loop in loops.items():
        print(f"{name}: compile + first call {loop.compile_seconds:.1f} s", flush=True)
    same = np.array_equal(loops["cached"].output, loops["uncached"].output)
    times = step_timing.interleaved_seconds(loops, steps, args.rounds)
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
