"""Side-by-side step timing of experiments in one process, with the trainer's own step.

Every timing is a `TimedLoop`: a compiled call without arguments (a train step fed its
own state, an eval step, one whole decode), compiled and warmed up first, then timed
per call with the device work waited on. `bare_loop` builds an experiment from its
config exactly as the trainer does (`experiment.build_experiment`) and steps the trainer's
jitted train step on one fixed on-device batch, with nothing around it (no input
pipeline, logging or checkpoints).
`interleaved_step_times` times several experiments round by round, so that a machine's
drift affects every experiment alike, and reports medians. `trainer_steps_per_sec`
is the other side of the trainer / bare-loop comparison: the whole trainer on a short
budget of the same config. `BenchmarkArgs` and `print_comparison` serve the modes of
`launch.benchmark`.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Mapping

import jax
import ml_collections

from framework.data import pipeline
from framework.experiments import run_budget, tables
from framework.train import checkpoints, train_state, trainer
from framework.train import experiment as experiment_lib


@dataclasses.dataclass
class TimedLoop:
    """A compiled call without arguments, timed per call, and what a table reports of it.

    A train step is a call too: `_Carried` feeds each new state back in (donated), so
    `output` is then the latest state.
    """

    call: Callable[[], Any]
    batch_size: int = 0
    num_params: int = 0
    compile_seconds: float = 0.0  # the first call: compilation and one step
    output: Any = None  # the latest call's output

    def run(self, steps: int) -> float:
        """Makes `steps` calls after the previous ones finished; returns seconds per call."""
        jax.block_until_ready(self.output)
        start = time.perf_counter()
        for _ in range(steps):
            out = self.call()
        self.output = jax.block_until_ready(out)
        return (time.perf_counter() - start) / steps


def timed_loop(call: Callable[[], Any], batch_size: int = 0, num_params: int = 0) -> TimedLoop:
    """A `TimedLoop` of `call`, compiled by a first (timed) call and warmed up by a second,
    so that timed calls run in the steady-state layout."""
    start = time.perf_counter()
    out = jax.block_until_ready(call())
    loop = TimedLoop(call, batch_size, num_params, time.perf_counter() - start, out)
    loop.run(1)
    return loop


@dataclasses.dataclass
class _Carried:
    """A step that feeds its output state back in: state = step(state, batch)."""

    step: Callable[[Any, Any], Any]
    state: Any
    batch: Any

    def __call__(self) -> Any:
        self.state = self.step(self.state, self.batch)
        return self.state


def _state(experiment: experiment_lib.Experiment, workdir: str | None) -> train_state.TrainState:
    """The latest checkpointed state in `workdir`, or the initial state when None."""
    if workdir is None:
        return experiment.init_state()
    return checkpoints.restore_state(workdir, experiment.abstract_state)[0]


def bare_loop(config: ml_collections.ConfigDict, workdir: str | None = None) -> TimedLoop:
    """`config`'s jitted train step on its state and one on-device batch, compiled and
    warmed up; `output` is the latest state.

    The state is the initial one, or the latest checkpoint of `workdir` (a trained
    adaptive model computes as much as its trained halting asks for).
    """
    experiment = experiment_lib.build_experiment(config)
    state = _state(experiment, workdir)
    batch = pipeline.shard_batch(experiment.example_batch, experiment.mesh)
    num_params = train_state.param_count(state.params)
    carried = _Carried(experiment.jit_train_step(), state, batch)
    return timed_loop(carried, experiment.config.batch_size, num_params)


def bare_eval_loop(config: ml_collections.ConfigDict, workdir: str | None = None) -> TimedLoop:
    """`config`'s jitted eval step on its first eval batch (params as in `bare_loop`)."""
    experiment = experiment_lib.build_experiment(config)
    params = _state(experiment, workdir).params
    batch = pipeline.shard_batch(experiment.dataset.example_eval_batch(), experiment.mesh)
    step = experiment.jit_eval_step()
    return timed_loop(
        lambda: step(params, batch),
        experiment.config.eval_batch_size,
        train_state.param_count(params),
    )


def interleaved_seconds(
    loops: Mapping[str, TimedLoop], steps: int, rounds: int
) -> dict[str, list[float]]:
    """Seconds per step of every loop in each round, the loops taking turns."""
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            times[name].append(loop.run(steps))
    return times


@dataclasses.dataclass(frozen=True)
class StepTime:
    """One experiment's median step time, and its time relative to the reference's."""

    name: str
    num_params: int
    batch_size: int
    compile_seconds: float
    seconds_per_step: float
    relative: float
    rounds: tuple[float, ...]  # seconds per step in each round

    @property
    def examples_per_sec(self) -> float:
        return self.batch_size / self.seconds_per_step


def trace_steps(loop: TimedLoop, steps: int, directory: str) -> None:
    """Runs `steps` steps of `loop` under `jax.profiler.trace(directory)`.

    The trace (TensorBoard's profile plugin, or `DIR/plugins/profile/*/*.trace.json.gz`
    in Perfetto) names every XLA op, so a step's time can be split by op; XLA's dump
    (`XLA_FLAGS=--xla_dump_to=...`) maps the op names back to the JAX code.
    """
    loop.run(1)  # outside the trace: nothing left to compile or lay out
    with jax.profiler.trace(directory):
        loop.run(steps)


def interleaved_step_times(
    configs: Mapping[str, ml_collections.ConfigDict],
    steps: int,
    rounds: int,
    reference: str | None = None,
    profile_dir: str | None = None,
) -> dict[str, StepTime]:
    """Times `steps` bare steps of every config per round, over `rounds` rounds.

    `reference` (default: the first config) is what `relative` divides by: the median
    over rounds of the step-time ratio within each round, so that a change in the
    machine's load between rounds cancels. With `profile_dir`, each config's loop then
    traces `steps` more steps into `profile_dir/<slug of its name>` (`trace_steps`).
    """
    if not configs:
        raise ValueError("interleaved_step_times needs at least one config")
    reference = next(iter(configs)) if reference is None else reference
    if reference not in configs:
        raise ValueError(f"reference {reference!r} is not one of {list(configs)}")
    loops = {name: bare_loop(config) for name, config in configs.items()}
    times = interleaved_seconds(loops, steps, rounds)
    if profile_dir:
        for name, loop in loops.items():
            trace_steps(loop, steps, os.path.join(profile_dir, tables.row_slug(name)))
    return {
        name: StepTime(
            name=name,
            num_params=loop.num_params,
            batch_size=loop.batch_size,
            compile_seconds=loop.compile_seconds,
            seconds_per_step=statistics.median(times[name]),
            relative=statistics.median(t / r for t, r in zip(times[name], times[reference])),
            rounds=tuple(times[name]),
        )
        for name, loop in loops.items()
    }


def format_step_times(results: Mapping[str, StepTime], reference: str) -> str:
    """A markdown table: parameters, step time, examples/s, relative to `reference`."""
    lines = [
        f"| model | parameters | step (ms) | examples/s | step time vs {reference} |",
        "|---|---|---|---|---|",
    ]
    for r in results.values():
        lines.append(
            f"| {r.name} | {r.num_params:,} | {r.seconds_per_step * 1e3:.1f} "
            f"| {r.examples_per_sec:.2f} | {r.relative:.3f} |"
        )
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class BenchmarkArgs:
    """What `launch.benchmark` passes a registered mode (`registry.BENCHMARKS`): its
    generic knobs, None where the mode's own default applies."""

    steps: int | None = None  # timed steps (or calls) per round and model
    rounds: int = 3
    profile_dir: str | None = None  # trace `steps` more steps of each model here
    size: str | None = None  # the model size a mode builds
    variant: str | None = None  # the model variant, for modes that time one
    batch_size: int | None = None
    image_size: int | None = None
    inputs_length: int | None = None
    targets_length: int | None = None
    vocab_size: int | None = None
    decode_length: int | None = None
    decode_method: str = "greedy"
    rows: tuple[str, ...] | None = None  # only these rows of a table, by slug


def platform() -> str:
    """The devices the timings ran on, e.g. `2 cpu device(s)`."""
    return f"{jax.device_count()} {jax.devices()[0].platform} device(s)"


def print_comparison(
    configs: Mapping[str, ml_collections.ConfigDict],
    steps: int,
    args: BenchmarkArgs,
    reference: str,
) -> None:
    """Times `configs` side by side (`interleaved_step_times`) and prints the table and
    every model's step time per round."""
    results = interleaved_step_times(configs, steps, args.rounds, reference, args.profile_dir)
    print(format_step_times(results, reference))
    for r in results.values():
        rounds = ", ".join(f"{t * 1e3:.0f}" for t in r.rounds)
        print(f"{r.name}: compile + 1 step {r.compile_seconds:.1f} s, step ms per round [{rounds}]")


def trainer_steps_per_sec(config: ml_collections.ConfigDict, steps: int) -> float:
    """Training throughput of the whole trainer over `steps` steps of `config`.

    The run keeps the config's schedule, log and checkpoint cadence and evaluates only
    at the end; the time is taken between its first and last log lines, so compilation
    and the final evaluation are excluded, as in `TimedLoop.run`.
    """
    budget = run_budget.RunBudget(
        steps + config.log_every_steps, keep_schedule=True, checkpoints=None, logs=None
    )
    config = budget.apply(config)
    with config.unlocked():
        config.compute_flops = False
    with tempfile.TemporaryDirectory() as workdir:
        result = trainer.train_and_evaluate(config, workdir)
    return result.timed_steps / result.timed_seconds
