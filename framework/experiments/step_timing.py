"""Side-by-side step timing of experiments in one process, with the trainer's own step.

`bare_loop` builds an experiment from its config exactly as the trainer does
(`trainer.build_experiment`) and steps the trainer's jitted train step on one fixed
on-device batch, with nothing around it (no input pipeline, logging or checkpoints).
`interleaved_step_times` times several experiments round by round, so that a machine's
drift affects every experiment alike, and reports medians. `trainer_steps_per_sec`
is the other side of the trainer / bare-loop comparison: the whole trainer on a short
budget of the same config.
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


@dataclasses.dataclass
class BareLoop:
    """The trainer's compiled train step with its state and one on-device batch."""

    step: Callable[..., Any]
    state: Any
    batch: dict[str, jax.Array]
    num_params: int
    batch_size: int
    compile_seconds: float

    def run(self, steps: int) -> float:
        """Takes `steps` steps; returns seconds per step."""
        jax.block_until_ready(self.state)
        start = time.perf_counter()
        for _ in range(steps):
            self.state = self.step(self.state, self.batch)
        jax.block_until_ready(self.state)
        return (time.perf_counter() - start) / steps


def trained_state(experiment: trainer.Experiment, workdir: str | None):
    """The latest checkpointed state in `workdir`, or the initial state when None."""
    if workdir is None:
        return experiment.init_state()
    ckpt = checkpoints.Checkpointer(workdir, keep=1, asynchronous=False)
    try:
        step = ckpt.latest_step()
        if step is None:
            raise ValueError(f"no checkpoint in {workdir}")
        return ckpt.restore(step, experiment.abstract_state)
    finally:
        ckpt.close()


def bare_loop(config: ml_collections.ConfigDict, workdir: str | None = None) -> BareLoop:
    """Builds `config`'s experiment and one batch; compiles and warms up its step.

    The state is the initial one, or the latest checkpoint of `workdir` (a trained
    adaptive model computes as much as its trained halting asks for).
    """
    experiment = trainer.build_experiment(config)
    state = trained_state(experiment, workdir)
    batch = pipeline.shard_batch(experiment.example_batch, experiment.mesh)
    step = experiment.jit_train_step()
    start = time.perf_counter()
    state = jax.block_until_ready(step(state, batch))  # compiles, then one step
    loop = BareLoop(
        step,
        state,
        batch,
        train_state.param_count(state.params),
        experiment.config.batch_size,
        compile_seconds=time.perf_counter() - start,
    )
    loop.run(1)  # a second warm-up step, in the steady-state layout
    return loop


@dataclasses.dataclass
class EvalLoop:
    """The trainer's compiled eval step with parameters and one on-device eval batch."""

    step: Callable[..., Any]
    params: Any
    batch: dict[str, jax.Array]
    batch_size: int

    def run(self, steps: int) -> float:
        """Takes `steps` eval steps; returns seconds per step."""
        start = time.perf_counter()
        for _ in range(steps):
            out = self.step(self.params, self.batch)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / steps


def bare_eval_loop(config: ml_collections.ConfigDict, workdir: str | None = None) -> EvalLoop:
    """`config`'s jitted eval step on its first eval batch (params as in `bare_loop`)."""
    experiment = trainer.build_experiment(config)
    params = trained_state(experiment, workdir).params
    batch = pipeline.shard_batch(experiment.dataset.example_eval_batch(), experiment.mesh)
    step = experiment.jit_eval_step()
    jax.block_until_ready(step(params, batch))  # compiles
    loop = EvalLoop(step, params, batch, experiment.config.eval_batch_size)
    loop.run(1)
    return loop


@dataclasses.dataclass
class CallLoop:
    """Any compiled call without arguments (e.g. one whole decode), timed like a step."""

    call: Callable[[], Any]
    compile_seconds: float = 0.0
    first_output: Any = None

    def run(self, steps: int) -> float:
        """Makes `steps` calls; returns seconds per call."""
        start = time.perf_counter()
        for _ in range(steps):
            out = self.call()
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / steps


def call_loop(call: Callable[[], Any]) -> CallLoop:
    """A `CallLoop` of `call` after a first call (compilation), whose time and output it keeps."""
    start = time.perf_counter()
    out = jax.block_until_ready(call())
    return CallLoop(call, compile_seconds=time.perf_counter() - start, first_output=out)


def interleaved_seconds(
    loops: Mapping[str, BareLoop | EvalLoop | CallLoop], steps: int, rounds: int
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


def trace_steps(loop: BareLoop | EvalLoop, steps: int, directory: str) -> None:
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
            trace_steps(loop, steps, os.path.join(profile_dir, tables.slugify(name)))
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


def trainer_steps_per_sec(config: ml_collections.ConfigDict, steps: int) -> float:
    """Training throughput of the whole trainer over `steps` steps of `config`.

    The run keeps the config's schedule, log and checkpoint cadence and evaluates only
    at the end; the time is taken between its first and last log lines, so compilation
    and the final evaluation are excluded, as in `BareLoop.run`.
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
