"""The generic trainer: jit + NamedSharding data parallelism over a `data` mesh axis.

`train_and_evaluate(config, workdir)` builds the run (`framework.train.experiment`),
locks the workdir, restores the latest checkpoint (or initialises), trains with the
steps of `framework.train.steps` and periodic evaluation (the evaluators `config.evals`
lists, see `framework.train.evaluators`), writes metrics, and checkpoints periodically,
at the end and on SIGTERM (`framework.train.preemption`). Models plug in through
`BaseModel.apply` and `BaseModel.metrics` plus the auxiliary channel (see
`framework.models.base`). What keeps a workdir one run's is in `framework.train.workdir`
and `framework.train.run_config`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Iterator

import jax
import ml_collections
from jax.sharding import Mesh

from framework.config import registry
from framework.errors import RunError
from framework.train import (
    checkpoints,
    chips,
    cost,
    device_io,
    disk_full,
    evaluators,
    metric_sums,
    metric_writing,
    preemption,
    run_config,
    run_record,
    sharding,
    train_state,
)
from framework.train import experiment as experiment_lib
from framework.train import workdir as workdir_lib


class NonFiniteLossError(RunError):
    """Training produced a NaN/inf loss or gradient; the last good checkpoint is kept."""


@dataclasses.dataclass
class RunResult:
    """What a run returns: the final step, its last train and eval metrics, and why it ended."""

    step: int
    train: dict[str, float]
    eval: dict[str, float]
    preempted: bool = False
    params: Any = None
    # Training throughput between the first and the last log line (compilation excluded;
    # logging and periodic checkpoints included, eval excluded).
    timed_steps: int = 0
    timed_seconds: float = 0.0
    num_params: int = 0
    flops_per_example: float = 0.0
    # A SIGTERM came after the last step (the run still finished): whoever runs several
    # runs in one process (a table) stops there instead of starting the next.
    stop_requested: bool = False


@registry.TRAINERS.register("default")
def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    mesh: Mesh | None = None,
    stop_after_step: int | None = None,
    accept_config_changes: bool = False,
) -> RunResult:
    """Trains `config` in `workdir`, resuming from its latest checkpoint.

    The workdir is locked for the run (a second run on it is a ConfigError naming this
    one). A resumed run must have the config it was started with, up to run-length and
    cadence fields, unless `accept_config_changes` (or `--accept_config_changes`).
    `stop_after_step` ends the run early (as if preempted there), for tests and tools.
    A NaN/inf loss or gradient raises `NonFiniteLossError` (a `RunError`).
    """
    experiment = experiment_lib.build_experiment(config, mesh)
    accept = accept_config_changes or run_config.accept_config_changes_flag()
    lock = workdir_lib.WorkdirLock(workdir)

    def take_workdir():
        lock.acquire()
        checkpoints.remove_temporaries(workdir)  # before any CheckpointManager exists
        run_record.clear(workdir)  # a record describes a run that has ended

    start = time.perf_counter()
    try:
        with _disk_full_stops_the_run(workdir):
            workdir_lib.on_process_0(take_workdir)
            # SIGTERM is handled until the last checkpoint is complete and the lock released.
            with preemption.SigtermFlag() as sigterm:
                result = _run(experiment, workdir, sigterm, stop_after_step, accept)
            result.stop_requested = sigterm.received
            seconds = time.perf_counter() - start
            run_record.write(workdir, record(result, experiment.config, seconds))
        return result
    finally:
        lock.release()


@contextlib.contextmanager
def _disk_full_stops_the_run(workdir: str) -> Iterator[None]:
    """A write that finds the disk full ends the run with one line (`DiskFullError`):
    the path, and the checkpoint a rerun resumes from once there is space. The library
    threads' own reports of it (tracebacks) are dropped."""
    with disk_full.quiet_logs():
        try:
            yield
        except Exception as e:
            full = disk_full.earliest(e)
            if full is None and not disk_full.is_disk_full(e):
                raise
            what = str(full or disk_full.error(workdir))
            steps = checkpoints.complete_steps(workdir)
            resumes = f"step {steps[-1]}, its last complete checkpoint" if steps else "step 0"
            raise disk_full.DiskFullError(
                f"{what}; free space there and rerun: it resumes from {resumes}"
            ) from e


def record(result: RunResult, config: ml_collections.ConfigDict, seconds: float) -> dict:
    """The run record (`framework.train.run_record`) of a run that ended with `result`."""
    return run_record.make(
        run_record.STOPPED if result.preempted else run_record.DONE,
        step=result.step,
        num_train_steps=config.num_train_steps,
        train=result.train,
        evaluation=result.eval,
        num_params=result.num_params,
        flops_per_example=result.flops_per_example,
        steps_per_sec=result.timed_steps / result.timed_seconds if result.timed_seconds else None,
        batch_size=config.batch_size,
        wall_seconds=seconds,
    )


@dataclasses.dataclass(frozen=True)
class Utilisation:
    """Model-FLOPs utilisation of a run's steps: the step's FLOPs (the model's analytical
    count, else XLA's) against the peak of the devices' chip; none on devices outside
    the chip table (CPUs)."""

    flops_per_step: float | None
    source: str  # analytical | xla | none
    num_devices: int
    chip: chips.Chip | None

    @classmethod
    def of(cls, experiment: experiment_lib.Experiment, compiled: Any) -> "Utilisation":
        mesh = experiment.mesh
        flops, source = cost.train_step_flops(
            experiment.model,
            experiment.abstract_state.params,
            experiment.abstract_batch,
            compiled,
            mesh.devices.size,
        )
        chip = chips.for_device_kind(mesh.devices.flat[0].device_kind) if flops else None
        return cls(flops, source, int(mesh.devices.size), chip)

    def at(self, steps_per_sec: float) -> float:
        return cost.utilisation(self.flops_per_step, steps_per_sec, self.num_devices, self.chip)

    def describe(self) -> str:
        if self.flops_per_step is None:
            return "train step FLOPs unknown (no analytical count, no XLA cost analysis): no MFU"
        where = (
            f"MFU against {self.chip}"
            if self.chip
            else "no MFU (the device is not in the chip table)"
        )
        return f"train step {self.flops_per_step:.3e} FLOPs ({self.source}); {where}"

    def info(self) -> dict[str, float]:
        """Numbers for the metrics' info line (peak FLOP/s only on a chip of the table)."""
        out = {
            "train_flops_per_step": self.flops_per_step or 0.0,
            "train_flops_analytical": float(self.source == "analytical"),
        }
        if self.chip is not None:
            out["chip_peak_flops"] = self.chip.peak_flops
        return out


def memory_line(mesh: Mesh, memory: dict[str, Any], grad_accum_steps: int) -> str:
    """'mesh data=2 fsdp=1 model=1 (2 devices); per device: parameters 1.2 MiB, ...'."""

    def size(key: str) -> str:
        value = memory.get(key)
        return "n/a" if value is None else metric_writing.format_bytes(value)

    micro = f", {grad_accum_steps} micro-batches per step" if grad_accum_steps > 1 else ""
    return (
        f"mesh {sharding.describe_mesh(mesh)}{micro}; per device: parameters "
        f"{size('param_bytes_per_device')}, optimizer state "
        f"{size('opt_state_bytes_per_device')}, batch {size('batch_bytes_per_device')}, "
        f"XLA temporaries {size('xla_temp_bytes_per_device')}"
    )


def _run(
    experiment: experiment_lib.Experiment,
    workdir: str,
    sigterm: preemption.SigtermFlag,
    stop_after_step: int | None,
    accept_config_changes: bool,
) -> RunResult:
    config, mesh, dataset, model = (
        experiment.config,
        experiment.mesh,
        experiment.dataset,
        experiment.model,
    )
    abstract_state, state_sharding = experiment.abstract_state, experiment.state_sharding
    shown_metrics = ("total_loss",) + tuple(model.progress_metrics)

    evals = evaluators.from_config(experiment, workdir)  # checks each one's dataset
    with contextlib.ExitStack() as cleanup:
        ckpt = checkpoints.Checkpointer(
            workdir, config.keep_checkpoints, config.async_checkpointing
        )
        cleanup.callback(ckpt.close)  # last: waits for the final save
        # The newest step that restores; newer ones that do not are moved aside.
        restored, start_step = ckpt.restore_newest(abstract_state)
        workdir_lib.on_process_0(
            lambda: run_config.check_config(config, workdir, start_step, accept_config_changes)
        )
        if restored is not None:
            state = restored
            metric_writing.log(f"Resumed from {ckpt.directory} at step {start_step}")
        else:
            state = experiment.init_state()
            if config.init_from:
                params, from_step = checkpoints.load_params(config.init_from, abstract_state.params)
                state = state.replace(params=params)
                metric_writing.log(
                    f"Parameters from {config.init_from} (step {from_step}); optimizer and "
                    "step count start afresh"
                )

        num_params = train_state.param_count(state.params)
        writer = metric_writing.MetricWriter(workdir, resumed_step=start_step)
        cleanup.callback(writer.close)
        flops = 0.0
        if config.compute_flops:
            flops = cost.forward_flops_per_example(
                model, abstract_state.params, experiment.abstract_batch
            )
        metric_writing.log(
            f"{config.experiment_name or config.model_name}: {num_params:,} parameters, "
            f"{flops / 1e6:.2f} MFLOPs/example forward, {mesh.devices.size} device(s), "
            f"{jax.process_count()} process(es), global batch {config.batch_size}"
        )
        train_step, memory = experiment.compile_train_step()
        metric_writing.log(memory_line(mesh, memory, config.get("grad_accum_steps", 1)))
        mfu = Utilisation.of(experiment, train_step)
        metric_writing.log(mfu.describe())
        if start_step == 0:
            info = {"num_params": num_params, "flops_per_example": flops}
            writer.write(0, "info", {**info, **memory, **mfu.info()})
        reset_sums = jax.jit(
            train_state.reset_metric_sums, out_shardings=state_sharding, donate_argnums=(0,)
        )

        total = config.num_train_steps
        progress = metric_writing.Progress(total, start_step)
        last_train: dict[str, float] = {}
        last_eval: dict[str, float] = {}
        preempted = False
        step = start_step
        timing: list[tuple[int, float]] = []  # (step, time without eval) at each log line
        eval_seconds = 0.0

        def check_finite(state):
            bad = int(device_io.to_host(state.first_nonfinite_step))
            if bad != train_state.NO_BAD_STEP:
                last = ckpt.latest_step()
                kept = (
                    f"The last good checkpoint (step {last}) is kept in {ckpt.directory}"
                    if last is not None
                    else "No checkpoint was written before it; a rerun starts from step 0"
                )
                raise NonFiniteLossError(
                    f"loss or gradient became non-finite at step {bad}; stopping. {kept}"
                )

        batches = device_io.prefetch(dataset.train_batches(start_step), mesh)
        cleanup.callback(batches.close)
        cleanup.callback(setattr, sigterm, "finishing", True)
        while step < total:
            state = train_step(state, next(batches))
            step += 1
            stop_now = sigterm.received or step == stop_after_step or ckpt.reached_preemption(step)
            is_last = step == total
            do_log = step % config.log_every_steps == 0 or is_last
            due = [e for e in evals if e.due(step, is_last)]
            do_ckpt = is_last or stop_now or step % config.checkpoint_every_steps == 0
            if do_log:
                check_finite(state)
                sums = device_io.to_host(state.metric_sums)
                state = reset_sums(state)
                rate = progress.update(step)
                timing.append((step, time.perf_counter() - eval_seconds))
                last_train = metric_sums.with_total_loss(metric_sums.ratios(sums))
                last_train["steps_per_sec"] = rate
                last_train["examples_per_sec"] = rate * config.batch_size
                if mfu.chip is not None:
                    last_train["mfu"] = mfu.at(rate)
                writer.write(step, "train", last_train)
                shown = {k: last_train[k] for k in shown_metrics if k in last_train}
                metric_writing.log(progress.line(step, rate, shown, last_train.get("mfu")))
            if due:
                t0 = time.perf_counter()
                result = evaluators.run(due, state.params, step)
                writer.write(step, "eval", result.scalars, result.histograms)
                last_eval.update(result.scalars)
                shown = " ".join(f"{k}={v:.4g}" for k, v in result.scalars.items())
                metric_writing.log(f"eval at step {step}: {shown}")
                progress.pause(time.perf_counter() - t0)
                eval_seconds += time.perf_counter() - t0
            if do_ckpt:
                t0 = time.perf_counter()
                check_finite(state)
                ckpt.save(step, state, force=True)
                progress.pause(time.perf_counter() - t0)
            if stop_now and not is_last:
                preempted = True
                break
    if preempted:
        metric_writing.log(f"Stopped at step {step} with a checkpoint; rerun to resume.")
    timed_steps, timed_seconds = 0, 0.0
    if len(timing) > 1:
        timed_steps, timed_seconds = timing[-1][0] - timing[0][0], timing[-1][1] - timing[0][1]
    return RunResult(
        step=step,
        train=last_train,
        eval=last_eval,
        preempted=preempted,
        params=state.params,
        timed_steps=timed_steps,
        timed_seconds=timed_seconds,
        num_params=num_params,
        flops_per_example=flops,
    )
