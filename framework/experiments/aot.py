"""Will it fit, and how fast? The trainer's train step compiled for a target it does not
run on (`launch.compile`, the `scale` table).

`compile_for_target(config, target)` builds the experiment exactly as `launch.train`
does (`build_experiment`: abstract state and batch with their shardings, no parameter
materialised) on a mesh of the target's devices (`targets.devices`), compiles the
trainer's own step with XLA for that target and reads back what one device needs and
what the step costs:

- memory per device: parameters, optimizer state, batch (from the shardings), XLA's
  arguments, outputs, temporaries and peak, against the chip's HBM; XLA's
  out-of-memory refusal (TPUs) as one line;
- FLOPs per step from XLA's cost analysis (all devices) beside the model's analytical
  count (`cost.analytical_train_flops`: 3 x forward), and bytes accessed per device;
- the collectives in the compiled program, with the bytes of their results;
- a roofline bound on the step time, max(FLOPs / peak FLOP/s, bytes / HBM bandwidth)
  per device, and the model-FLOPs utilisation (MFU) a step at that bound would reach.

Figures are compile-time estimates: no step runs. The roofline ignores communication
time and overlap, so a real step is slower and its MFU lower.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import re
import time
from typing import Any

import ml_collections

from framework.config import schema
from framework.experiments import targets as targets_lib
from framework.train import chips, cost, experiment, metric_writing, sharding, train_state

_size = metric_writing.format_bytes

GIB = 2**30
FITS_FRACTION = 0.9  # a layout "fits comfortably" when its peak is at most this of HBM

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_COLLECTIVE_LINE = re.compile(
    r"=\s*(?P<shape>.+?)\s+(?P<op>" + "|".join(COLLECTIVES) + r")(?P<suffix>-start|-done)?\("
)
_ARRAY = re.compile(r"\b(pred|[subf]\d+|bf16|f8\w*|c64|c128)\[([\d,]*)\]")
_DTYPE_BYTES = {"pred": 1, "bf16": 2, "c64": 8, "c128": 16}
_OOM = re.compile(r"\(([\d.]+)([KMGT]?)\)\s+exceeds available HBM\s+\(([\d.]+)([KMGT]?)\)")
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclasses.dataclass
class CompileReport:
    """What compiling one config for one target found (all bytes per device)."""

    experiment: str
    target: str
    target_description: str
    chip: str
    mesh: dict[str, int]
    grad_accum_steps: int
    remat: str
    dtype: str
    batch_size: int
    num_params: int
    hbm_bytes: int
    usable_hbm_bytes: int  # what a program may use (GPUs: JAX's preallocated share)
    memory: dict[str, int]  # params, opt_state, batch, argument, output, temp, alias, peak
    fits: bool
    oom: str | None = None  # XLA's out-of-memory, one line
    xla_flops_per_step: float | None = None  # all devices
    analytical_flops_per_step: float | None = None  # 3 x forward, all devices
    bytes_accessed_per_device: float | None = None
    collectives: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    roofline_seconds: float | None = None
    roofline_bound: str | None = None  # compute | memory
    roofline_flops: str = "xla"  # whose FLOPs the roofline used: xla | analytical
    mfu_at_bound: float | None = None
    compile_seconds: float = 0.0
    num_devices: int = 0

    @property
    def peak_fraction(self) -> float | None:
        peak = self.memory.get("peak")
        return peak / self.hbm_bytes if peak is not None else None

    @property
    def flops_ratio(self) -> float | None:
        """XLA's FLOPs over the analytical count (1.0: they agree)."""
        if self.xla_flops_per_step and self.analytical_flops_per_step:
            return self.xla_flops_per_step / self.analytical_flops_per_step
        return None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["peak_fraction"] = self.peak_fraction
        out["flops_ratio"] = self.flops_ratio
        return out

    def lines(self) -> list[str]:
        """The report as a user reads it on the console."""
        m = self.memory
        mesh = " ".join(f"{axis}={size}" for axis, size in self.mesh.items())
        accum = f", {self.grad_accum_steps} micro-batches" if self.grad_accum_steps > 1 else ""
        out = [
            f"{self.experiment} on {self.target_description}",
            f"mesh {mesh}; batch {self.batch_size}{accum}; {self.dtype}, remat={self.remat}; "
            f"{self.num_params:,} parameters; compiled in {self.compile_seconds:.0f} s",
            "per device: "
            + ", ".join(
                f"{label} {_size(m[key])}"
                for key, label in (
                    ("params", "parameters"),
                    ("opt_state", "optimizer state"),
                    ("batch", "batch"),
                    ("temp", "XLA temporaries"),
                )
                if key in m
            ),
        ]
        if self.oom:
            out.append(f"DOES NOT FIT: {self.oom}")
        elif "peak" in m:
            verdict = "fits" if self.fits else "DOES NOT FIT"
            usable = ""
            if self.usable_hbm_bytes != self.hbm_bytes:
                usable = (
                    f"; usable {_size(self.usable_hbm_bytes)}, the share JAX preallocates "
                    "by default, XLA_PYTHON_CLIENT_MEM_FRACTION"
                )
            out.append(
                f"{verdict}: peak {_size(m['peak'])} of {_size(self.hbm_bytes)} HBM "
                f"({100 * self.peak_fraction:.0f}%){usable}"
            )
        if self.xla_flops_per_step:
            per_example = self.xla_flops_per_step / self.batch_size
            line = f"FLOPs per step {self.xla_flops_per_step:.3e} (XLA; {per_example:.3e}/example)"
            if self.analytical_flops_per_step:
                line += (
                    f", analytical {self.analytical_flops_per_step:.3e}: "
                    f"XLA / analytical {self.flops_ratio:.2f}"
                )
            out.append(line)
        elif self.analytical_flops_per_step:
            out.append(f"FLOPs per step {self.analytical_flops_per_step:.3e} (analytical)")
        if self.bytes_accessed_per_device:
            accessed = _size(self.bytes_accessed_per_device)
            out.append(f"HBM bytes accessed per device per step {accessed}")
        if self.collectives:
            out.append(
                "collectives (ops in the program, result bytes per device): "
                + ", ".join(
                    f"{op} x{int(c['count'])} {_size(c['bytes'])}"
                    for op, c in self.collectives.items()
                )
            )
        if self.roofline_seconds:
            out.append(
                f"roofline step time {1e3 * self.roofline_seconds:.3g} ms "
                f"({self.roofline_bound}-bound, {self.roofline_flops} FLOPs), MFU at that "
                f"bound {100 * self.mfu_at_bound:.0f}% (compile-time estimate; communication "
                "not counted)"
            )
        return out


def collectives(hlo_text: str) -> dict[str, dict[str, float]]:
    """{op: {count, bytes}} of the collectives in a compiled program's HLO text; bytes are
    those of each op's result on one device. Asynchronous pairs count once (at `-done`);
    an op inside a loop body counts once, not once per iteration."""
    found: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"count": 0, "bytes": 0})
    for line in hlo_text.splitlines():
        match = _COLLECTIVE_LINE.search(line)
        if not match or match.group("suffix") == "-start":
            continue
        entry = found[match.group("op")]
        entry["count"] += 1
        entry["bytes"] += sum(
            _dtype_bytes(dtype) * math.prod(int(d) for d in dims.split(",") if d)
            for dtype, dims in _ARRAY.findall(match.group("shape"))
        )
    return {op: dict(found[op]) for op in COLLECTIVES if op in found}


def _dtype_bytes(dtype: str) -> int:
    if dtype in _DTYPE_BYTES:
        return _DTYPE_BYTES[dtype]
    bits = int(re.match(r"[a-z]+(\d+)", dtype).group(1))
    return max(1, bits // 8)


def out_of_memory(error: BaseException) -> str | None:
    """XLA's out-of-HBM refusal as one line (`needs 48.06 GiB per device, 15.75 GiB
    available`), or None when `error` is something else."""
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text and "Ran out of memory" not in text:
        return None
    match = _OOM.search(text)
    if not match:
        return text.strip().splitlines()[0][:300]
    need = float(match.group(1)) * _UNITS[match.group(2)]
    have = float(match.group(3)) * _UNITS[match.group(4)]
    return f"needs {need / GIB:.2f} GiB per device, {have / GIB:.2f} GiB available"


def roofline(
    flops_per_device: float, bytes_per_device: float | None, chip: chips.Chip
) -> tuple[float, str]:
    """(seconds, bound): the step can be no faster than its FLOPs at peak nor its HBM
    traffic at full bandwidth."""
    compute = flops_per_device / chip.peak_flops
    memory = (bytes_per_device or 0.0) / chip.hbm_bandwidth
    return (compute, "compute") if compute >= memory else (memory, "memory")


def _bytes_accessed(compiled: Any) -> float | None:
    """XLA's estimate of the HBM bytes one device reads and writes in a step."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return float((analysis or {}).get("bytes accessed", 0.0)) or None


def _memory(exp: experiment.Experiment, compiled: Any) -> dict[str, int]:
    state = exp.memory(compiled)
    out = {
        "params": state["param_bytes_per_device"],
        "opt_state": state["opt_state_bytes_per_device"],
        "batch": state["batch_bytes_per_device"],
    }
    for name in ("argument", "output", "temp", "alias"):
        if f"xla_{name}_bytes_per_device" in state:
            out[name] = state[f"xla_{name}_bytes_per_device"]
    if compiled is not None and "temp" in out:
        analysis = compiled.memory_analysis()
        peak = int(getattr(analysis, "peak_memory_in_bytes", 0) or 0)
        code = int(getattr(analysis, "generated_code_size_in_bytes", 0) or 0)
        # Live at once: the arguments, the outputs that do not reuse a donated argument,
        # the temporaries and the program itself.
        summed = out["argument"] + out["output"] - out["alias"] + out["temp"] + code
        out["peak"] = max(peak, summed)
    return out


def _cpu_cost(lowered: Any) -> dict[str, float]:
    """XLA's CPU cost analysis of the whole lowered step (before partitioning), or {}."""
    from framework.experiments import gpu_devices

    try:
        return gpu_devices.cpu_cost_analysis(lowered)
    except Exception:  # best effort: an estimate, not needed for the memory figures
        return {}


def usable_hbm(spec: targets_lib.Target) -> int:
    """HBM a program may use: the chip's on TPUs (XLA refuses more at compile time); on
    GPUs the share JAX preallocates (XLA_PYTHON_CLIENT_MEM_FRACTION, default 0.75)."""
    if spec.platform != "cuda":
        return spec.chip.hbm_bytes
    fraction = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.75"))
    return int(fraction * spec.chip.hbm_bytes)


def compile_for_target(config: ml_collections.ConfigDict, target: str) -> CompileReport:
    """Compiles `config`'s train step for `target` (e.g. `v4-32`, `h100x8`) on this host
    and reports memory, FLOPs, collectives and the roofline (see the module docstring)."""
    spec = targets_lib.parse(target)
    devices = list(targets_lib.devices(spec))
    config = schema.resolve(config)
    mesh = sharding.make_mesh(config.mesh, devices)
    start = time.perf_counter()
    exp = experiment.build_experiment(config, mesh)
    lowered = exp.jit_train_step().lower(exp.abstract_state, exp.abstract_batch)
    compiled, oom = None, None
    options = {}
    if spec.platform == "cuda":
        from framework.experiments import gpu_devices

        options = gpu_devices.COMPILER_OPTIONS
    try:
        compiled = lowered.compile(compiler_options=options or None)
    except Exception as error:  # XLA refuses a program over HBM at compile time (TPU)
        oom = out_of_memory(error)
        if oom is None:
            raise
    seconds = time.perf_counter() - start
    memory = _memory(exp, compiled)
    chip = spec.chip
    report = CompileReport(
        experiment=config.experiment_name or config.model_name,
        target=spec.name,
        target_description=targets_lib.name_of(spec),
        chip=chip.name,
        mesh={axis: int(size) for axis, size in mesh.shape.items()},
        grad_accum_steps=int(config.get("grad_accum_steps", 1)),
        remat=str(config.model.get("remat", "none")),
        dtype=str(config.model.get("dtype", "float32")),
        batch_size=int(config.batch_size),
        num_params=train_state.param_count(exp.abstract_state.params),
        hbm_bytes=chip.hbm_bytes,
        usable_hbm_bytes=usable_hbm(spec),
        memory=memory,
        fits=oom is None and memory.get("peak", 0) <= usable_hbm(spec),
        oom=oom,
        analytical_flops_per_step=cost.analytical_train_flops(
            exp.model, exp.abstract_state.params, exp.abstract_batch
        ),
        compile_seconds=seconds,
        num_devices=len(devices),
    )
    if compiled is None:
        return report
    per_device = cost.compiled_flops(compiled)
    if per_device:
        report.xla_flops_per_step = per_device * len(devices)
        report.bytes_accessed_per_device = _bytes_accessed(compiled)
    elif spec.platform == "cuda":  # no cost analysis for GPUs: XLA's CPU count of the step
        whole = _cpu_cost(lowered)
        if whole.get("flops"):
            report.xla_flops_per_step = float(whole["flops"])
            report.bytes_accessed_per_device = (
                float(whole.get("bytes accessed", 0.0)) / len(devices) or None
            )
    report.collectives = collectives(compiled.as_text())
    if report.grad_accum_steps > 1 and report.xla_flops_per_step:
        # The micro-batches are a loop whose body XLA counts once: k bodies per step (the
        # optimizer update, outside the loop, is then counted k times: a small excess).
        report.xla_flops_per_step *= report.grad_accum_steps
        if report.bytes_accessed_per_device:
            report.bytes_accessed_per_device *= report.grad_accum_steps
    finish_roofline(report)
    return report


def finish_roofline(report: CompileReport) -> None:
    """The roofline step time and the MFU at it, from the report's FLOPs and bytes.

    XLA counts a loop's body once (e.g. reads in a `lax.scan`): where
    the analytical count is higher, the roofline uses it.
    """
    xla = report.xla_flops_per_step or 0.0
    flops = max(xla, report.analytical_flops_per_step or 0.0)
    report.roofline_flops = "analytical" if flops and flops != xla else "xla"
    if not flops:
        return
    chip, devices = chips.get(report.chip), report.num_devices
    seconds, bound = roofline(flops / devices, report.bytes_accessed_per_device, chip)
    model_flops = report.analytical_flops_per_step or flops
    report.roofline_seconds, report.roofline_bound = seconds, bound
    report.mfu_at_bound = model_flops / devices / (seconds * chip.peak_flops)


def report_json(report: CompileReport) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=True)


def ladder(num_devices: int, state_fraction: float) -> list[tuple[str, tuple[str, ...]]]:
    """Layouts to try, in order, when a config's own does not fit: (label, overrides).

    When the state (parameters and optimizer state) takes a quarter of HBM or more,
    shard it first (FSDP over every device); otherwise the activations are what does not
    fit, so recompute them first (remat=block) and keep data parallelism; micro-batches
    come last."""
    fsdp = ("--config.mesh.data=1", f"--config.mesh.fsdp={num_devices}", "--config.mesh.model=1")
    remat = ("--config.model.remat=block",)
    sharded = f"fsdp={num_devices}"
    steps: list[tuple[str, tuple[str, ...]]] = []
    if state_fraction >= 0.25:
        steps += [(sharded, fsdp), (f"{sharded}, remat=block", (*fsdp, *remat))]
        base_label, base = f"{sharded}, remat=block", (*fsdp, *remat)
    else:
        steps += [("remat=block", remat)]
        base_label, base = "remat=block", remat
    for k in (2, 4):
        accumulate = f"--config.grad_accum_steps={k}"
        steps.append((f"{base_label}, {k} micro-batches", (*base, accumulate)))
    if state_fraction < 0.25:
        steps.append((f"{sharded}, remat=block", (*fsdp, *remat)))
    return steps


def _layout(result: dict[str, Any], overrides: tuple[str, ...]) -> tuple:
    """(mesh, remat, micro-batches) of a compiled result with `overrides` applied."""
    layout = {f"mesh.{axis}": str(size) for axis, size in result.get("mesh", {}).items()}
    layout["model.remat"] = str(result.get("remat", "none"))
    layout["grad_accum_steps"] = str(result.get("grad_accum_steps", 1))
    for flag in overrides:
        key, _, value = flag.removeprefix("--config.").partition("=")
        layout[key] = value
    return tuple(sorted(layout.items()))


def layouts_to_try(result: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    """`ladder`'s layouts for a result that did not fit (a `CompileReport.to_json()`),
    without the layout it already has and without repeats: (label, overrides)."""
    memory, hbm = result.get("memory", {}), result.get("hbm_bytes") or 1
    state = (memory.get("params", 0) + memory.get("opt_state", 0)) / hbm
    seen = [_layout(result, ())]
    out = []
    for label, overrides in ladder(result["num_devices"], state):
        if _layout(result, overrides) not in seen:
            seen.append(_layout(result, overrides))
            out.append((label, overrides))
    return out
