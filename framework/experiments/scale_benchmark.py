"""`launch.benchmark --mode=scale`: what sharding, micro-batching and bfloat16 cost.

  python -m launch.benchmark --mode=scale [--config=FILE[:arg]] [--batch_size=16
      --image_size=224 --steps=3 --rounds=3]

On `--config` (default: ViT-S/16 on random 224 px images), in one process:
1. Per-device memory of the compiled train step for each mesh layout of the devices
   (data parallel, FSDP, tensor parallel over all of them, and data parallel with 4
   micro-batches): parameters, optimizer state, XLA's arguments and temporaries, from
   `Experiment.compile_train_step` (compiled only, nothing runs; for N CPU devices use
   `XLA_FLAGS=--xla_force_host_platform_device_count=N`).
2. Train-step time of the whole batch against 4 micro-batches of it
   (`grad_accum_steps=4`) and against bfloat16 computation, interleaved over rounds,
   each relative to the whole float32 batch (`step_timing.print_comparison`).
"""

from __future__ import annotations

import jax
import ml_collections

from framework import app
from framework.config import loader, registry
from framework.experiments import step_timing
from framework.experiments.step_timing import BenchmarkArgs
from framework.train import experiment as experiment_lib
from framework.train import sharding

DEFAULT_CONFIG = "configs/baselines/vit.py:S/16,data=random"
REFERENCE = "float32, whole batch"
MEMORY_FIELDS = (
    ("param_bytes_per_device", "parameters"),
    ("opt_state_bytes_per_device", "optimizer state"),
    ("xla_argument_bytes_per_device", "XLA arguments"),
    ("xla_temp_bytes_per_device", "XLA temporaries"),
)


def _with(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
    config = config.copy_and_resolve_references()
    for key, value in fields.items():
        loader.set_field(config, key.replace("__", "."), value)
    return config


def mesh_layouts(num_devices: int) -> dict[str, dict[str, int]]:
    """Data parallel, FSDP and tensor parallel over `num_devices` devices."""
    layouts = {f"data={num_devices}": {"data": num_devices, "fsdp": 1, "model": 1}}
    if num_devices > 1:
        layouts[f"fsdp={num_devices}"] = {"data": 1, "fsdp": num_devices, "model": 1}
        layouts[f"model={num_devices}"] = {"data": 1, "fsdp": 1, "model": num_devices}
    return layouts


def memory_table(config: ml_collections.ConfigDict) -> str:
    """Per-device MiB of the compiled train step for each layout of `mesh_layouts`, and
    for the data-parallel layout with 4 micro-batches."""
    header = " | ".join(label for _, label in MEMORY_FIELDS)
    lines = [
        f"| mesh | {header} | parameters vs data |",
        "|---|" + "---|" * (len(MEMORY_FIELDS) + 1),
    ]
    reference = None
    rows = {name: (config, layout) for name, layout in mesh_layouts(jax.device_count()).items()}
    data_name, data_layout = next(iter(mesh_layouts(jax.device_count()).items()))
    rows[f"{data_name}, 4 micro-batches"] = (_with(config, grad_accum_steps=4), data_layout)
    for name, (row_config, layout) in rows.items():
        experiment = experiment_lib.build_experiment(row_config, sharding.make_mesh(layout))
        memory = experiment.compile_train_step()[1]
        reference = reference or memory["param_bytes_per_device"]
        cells = " | ".join(f"{memory.get(key, 0) / 2**20:.2f}" for key, _ in MEMORY_FIELDS)
        ratio = memory["param_bytes_per_device"] / reference
        lines.append(f"| {name} | {cells} | {ratio:.2f} |")
    return "\n".join(lines)


@registry.BENCHMARKS.register("scale")
def scale_mode(args: BenchmarkArgs) -> None:
    """Memory per mesh layout; step time of micro-batches and bfloat16 vs the whole batch."""
    config = app.config()
    batch_size, steps = args.batch_size or 16, args.steps or 3
    fields = {"batch_size": batch_size, "eval_batch_size": batch_size}
    if config is None:
        fields["dataset.image_size"] = args.image_size or 224
        config = loader.load_config(DEFAULT_CONFIG, **fields)
    else:
        config = _with(config, **fields)
    print(
        f"{config.experiment_name or config.model_name}: batch {batch_size}, "
        f"{step_timing.platform()}",
        flush=True,
    )
    print("\nPer-device memory of the compiled train step (MiB):")
    print(memory_table(config), flush=True)
    configs = {
        REFERENCE: _with(config),
        "float32, 4 micro-batches": _with(config, grad_accum_steps=4),
        "bfloat16, whole batch": _with(config, model__dtype="bfloat16"),
    }
    print(f"\nTrain-step time, {args.rounds} rounds of {steps} steps:")
    step_timing.print_comparison(configs, steps, args, REFERENCE)
