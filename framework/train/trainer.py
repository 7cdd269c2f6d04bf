"""The generic trainer: jit + NamedSharding data parallelism over a `data` mesh axis.

`train_and_evaluate(config, workdir)` validates the config, builds the dataset and
model from the registries, locks the workdir, restores the latest checkpoint (or
initialises), trains with periodic evaluation (the evaluators `config.evals` lists, see
`framework.train.evaluators`), writes metrics, and checkpoints periodically, at the end
and on SIGTERM. Models plug in through `BaseModel.apply` and `BaseModel.metrics` plus the
auxiliary channel (see `framework.models.base`). What keeps a workdir one run's is in
`framework.train.workdir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from framework.config import registry, schema
from framework.data import pipeline
from framework.errors import ConfigError, RunError
from framework.models import base
from framework.train import (
    checkpoints,
    device_io,
    evaluators,
    metric_sums,
    metric_writing,
    optimizers,
    run_record,
    train_state,
)
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


def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over all devices (or those given) with axis `data`."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (pipeline.DATA_AXIS,))


def check_batch_sizes(config: ml_collections.ConfigDict, mesh: Mesh) -> None:
    n = mesh.devices.size
    for key in ("batch_size", "eval_batch_size"):
        if config[key] % n:
            raise ConfigError(
                f"config.{key}={config[key]} does not divide over {n} devices; "
                f"use a multiple of {n}"
            )


# --------------------------------------------------------------------------------------
# The objective and the steps: the one definition that training, benchmarks and tests use.
# --------------------------------------------------------------------------------------


def objective(pairs: Mapping[str, tuple[jax.Array, jax.Array]], mask: jax.Array) -> jax.Array:
    """The loss that is optimised: the model's `loss` plus every auxiliary loss.

    `loss` is a ratio of masked sums (e.g. cross-entropy per real target token); each
    auxiliary loss is a masked mean over real examples. Both denominators are guarded,
    so a batch of padding only gives 0, not NaN.
    """
    loss_num, loss_den = pairs["loss"]
    total = (loss_num * mask).sum() / jnp.maximum((loss_den * mask).sum(), 1e-9)
    for name, (value, _) in pairs.items():
        if name.startswith(f"{base.AUX_LOSS}/"):
            total = total + (value * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    return total


def make_loss_fn(model: base.BaseModel) -> Callable:
    """`loss_fn(params, batch, rng) -> (loss, (metric pairs, auxiliary values))`.

    The training forward pass (dropout from `rng`) and `objective`; the pairs are what
    the trainer sums into its logged metrics.
    """

    def loss_fn(params, batch, rng):
        outputs, aux = model.apply(params, batch, train=True, rng=rng)
        pairs = metric_sums.metric_pairs(model, outputs, aux, batch)
        return objective(pairs, batch["mask"]), (pairs, aux)

    return loss_fn


def make_train_step(model: base.BaseModel, tx, lr_fn, seed: int) -> Callable:
    """`train_step(state, batch) -> state`: gradient, update, running metric sums.

    Dropout draws from (seed, step), so a resumed run repeats an uninterrupted one. A
    non-finite loss or gradient is recorded in the state (the host checks it at log and
    checkpoint time, without a device sync every step).
    """
    loss_fn = make_loss_fn(model)

    def train_step(state: train_state.TrainState, batch) -> train_state.TrainState:
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        grads, (pairs, _) = jax.grad(loss_fn, has_aux=True)(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        sums = metric_sums.masked_sums(pairs, batch["mask"])
        sums["grad_norm"] = jnp.stack([grad_norm, 1.0])
        sums["learning_rate"] = jnp.stack([lr_fn(state.step), 1.0])
        finite = jnp.isfinite(sums["loss"][0]) & jnp.isfinite(grad_norm)
        bad_step = jnp.where(finite, train_state.NO_BAD_STEP, state.step + 1)
        return state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            metric_sums=jax.tree.map(jnp.add, state.metric_sums, sums),
            first_nonfinite_step=jnp.minimum(state.first_nonfinite_step, bad_step),
        )

    return train_step


def make_eval_step(model: base.BaseModel) -> Callable:
    def eval_step(params, batch):
        outputs, aux = model.apply(params, batch, train=False)
        pairs = metric_sums.metric_pairs(model, outputs, aux, batch)
        return (
            metric_sums.masked_sums(pairs, batch["mask"]),
            dict(aux[base.AUX_HISTOGRAMS]),
            batch["mask"],
        )

    return eval_step


# --------------------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------------------


class _SigtermFlag:
    """Records SIGTERM (TPU preemption) so the loop can checkpoint and exit cleanly.

    Installed for the whole run, until the last checkpoint is written and the workdir
    released, so that a SIGTERM during the final (asynchronous) save only waits for it.
    """

    def __init__(self):
        self.received = False
        self.finishing = False  # set once the loop has ended and the last save is closing
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.finishing:
            metric_writing.log("SIGTERM received: finishing the last checkpoint, then exiting")
        else:
            metric_writing.log("SIGTERM received: saving a checkpoint and exiting")
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _global_abstract_batch(batch: pipeline.Batch, split: pipeline.HostSplit, mesh: Mesh):
    """ShapeDtypeStructs of the global batch assembled from host-local `batch`."""
    sharding = pipeline.data_sharding(mesh)
    return {
        k: jax.ShapeDtypeStruct(
            (v.shape[0] * split.process_count,) + v.shape[1:], v.dtype, sharding=sharding
        )
        for k, v in batch.items()
    }


def forward_flops_per_example(model: base.BaseModel, abstract_params, abstract_batch) -> float:
    """XLA's estimate of forward-pass FLOPs for one example (0 when unavailable).

    Compiled for one device without sharding, so the count is for the whole batch.
    """
    unsharded = lambda tree: jax.tree.map(  # noqa: E731
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree
    )
    fn = jax.jit(lambda p, b: model.apply(p, b, train=False)[0])
    try:
        lowered = fn.lower(unsharded(abstract_params), unsharded(abstract_batch))
        cost = lowered.compile().cost_analysis()
    except Exception:  # cost analysis is best-effort on some backends
        return 0.0
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    batch_size = next(iter(abstract_batch.values())).shape[0]
    return float((cost or {}).get("flops", 0.0)) / batch_size


def _state_initializer(model: base.BaseModel, tx, abstract_batch) -> Callable:
    """`init(rng) -> TrainState` for batches shaped like `abstract_batch`."""

    def init(rng: jax.Array) -> train_state.TrainState:
        batch = {k: jnp.zeros(v.shape, v.dtype) for k, v in abstract_batch.items()}
        params = model.init(rng, batch)
        outputs, aux = model.apply(params, batch, train=False)
        pairs = metric_sums.metric_pairs(model, outputs, aux, batch)
        names = tuple(pairs) + ("grad_norm", "learning_rate")
        return train_state.create(params, tx.init(params), names)

    return init


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A resolved config with everything built from it, before any state exists.

    The trainer, the bare-loop benchmark and the tests build runs through this one
    path, so they all compile the same train step on the same state layout.
    """

    config: ml_collections.ConfigDict
    mesh: Mesh
    dataset: pipeline.DatasetBuilder
    model: base.BaseModel
    tx: optax.GradientTransformation
    lr_fn: Callable[[Any], Any]
    example_batch: pipeline.Batch  # host-local, the first training batch
    abstract_batch: dict[str, jax.ShapeDtypeStruct]  # global, sharded over `data`
    abstract_state: Any  # ShapeDtypeStructs carrying their (replicated) shardings
    init_fn: Callable[[jax.Array], train_state.TrainState]

    @property
    def state_sharding(self) -> Any:
        return jax.tree.map(lambda a: a.sharding, self.abstract_state)

    def init_state(self) -> train_state.TrainState:
        """The initial state for `config.seed`, laid out over the mesh."""
        init = jax.jit(self.init_fn, out_shardings=self.state_sharding)
        return init(jax.random.key(self.config.seed))

    def jit_train_step(self) -> Callable:
        """The trainer's train step, jitted for this state and batch layout."""
        return jax.jit(
            make_train_step(self.model, self.tx, self.lr_fn, self.config.seed),
            in_shardings=(self.state_sharding, pipeline.data_sharding(self.mesh)),
            out_shardings=self.state_sharding,
            donate_argnums=(0,),
        )

    def jit_eval_step(self) -> Callable:
        """The trainer's eval step, jitted for these parameters and batch layout."""
        return jax.jit(
            make_eval_step(self.model),
            in_shardings=(self.state_sharding.params, pipeline.data_sharding(self.mesh)),
            out_shardings=NamedSharding(self.mesh, PartitionSpec()),
        )


def build_experiment(config: ml_collections.ConfigDict, mesh: Mesh | None = None) -> Experiment:
    """Resolves `config` and builds its dataset, model, optimizer and state layout."""
    config = schema.resolve(config)
    mesh = make_mesh() if mesh is None else mesh
    check_batch_sizes(config, mesh)
    split = pipeline.HostSplit.current(config.batch_size, config.eval_batch_size)
    dataset = registry.DATASETS.get(config.dataset_name)(config.dataset, split, config.seed)
    model = registry.MODELS.get(config.model_name)(config.model, dataset.meta)
    tx, lr_fn = optimizers.create(config)
    example_batch = dataset.example_batch()
    abstract_batch = _global_abstract_batch(example_batch, split, mesh)
    init_fn = _state_initializer(model, tx, abstract_batch)
    replicated = NamedSharding(mesh, PartitionSpec())
    shapes = jax.eval_shape(init_fn, jax.random.key(config.seed))
    return Experiment(
        config=config,
        mesh=mesh,
        dataset=dataset,
        model=model,
        tx=tx,
        lr_fn=lr_fn,
        example_batch=example_batch,
        abstract_batch=abstract_batch,
        abstract_state=jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), shapes
        ),
        init_fn=init_fn,
    )


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
    experiment = build_experiment(config, mesh)
    accept = accept_config_changes or workdir_lib.accept_config_changes_flag()
    lock = workdir_lib.WorkdirLock(workdir)

    def take_workdir():
        lock.acquire()
        checkpoints.remove_temporaries(workdir)  # before any CheckpointManager exists
        run_record.clear(workdir)  # a record describes a run that has ended

    start = time.perf_counter()
    try:
        workdir_lib.on_process_0(take_workdir)
        # SIGTERM is handled until the last checkpoint is complete and the lock released.
        with _SigtermFlag() as sigterm:
            result = _run(experiment, workdir, sigterm, stop_after_step, accept)
        run_record.write(workdir, record(result, experiment.config, time.perf_counter() - start))
        return result
    finally:
        lock.release()


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


def _run(
    experiment: Experiment,
    workdir: str,
    sigterm: _SigtermFlag,
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
        ckpt.check_compatible(abstract_state)
        start_step = ckpt.latest_step() or 0
        workdir_lib.on_process_0(
            lambda: workdir_lib.check_config(config, workdir, start_step, accept_config_changes)
        )
        if start_step:
            state = ckpt.restore(start_step, abstract_state)
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
            flops = forward_flops_per_example(
                model, abstract_state.params, experiment.abstract_batch
            )
        metric_writing.log(
            f"{config.experiment_name or config.model_name}: {num_params:,} parameters, "
            f"{flops / 1e6:.2f} MFLOPs/example forward, {mesh.devices.size} device(s), "
            f"{jax.process_count()} process(es), global batch {config.batch_size}"
        )
        if start_step == 0:
            writer.write(0, "info", {"num_params": num_params, "flops_per_example": flops})

        train_step = experiment.jit_train_step()
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
                writer.write(step, "train", last_train)
                shown = {k: last_train[k] for k in shown_metrics if k in last_train}
                metric_writing.log(progress.line(step, rate, shown))
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
