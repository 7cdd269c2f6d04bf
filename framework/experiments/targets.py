"""Compile targets named as users name them, and their devices without the hardware.

`v3-8`, `v4-32`, `v5e-256`, `v5p-128`, `v6e-64` (Cloud TPU slice names: the number
counts TensorCores for v2, v3, v4 and v5p, chips for v5e and v6e), `2x v4-32` (two
slices over the data-centre network), `a100x8`, `h100x8`, `h200x8` (hosts of 8 GPUs),
`2x h100x8` (two such hosts). `devices(target)` gives the JAX devices of the whole
target, from libtpu's topology descriptions for TPUs (the `tpu` extra) or XLA's GPU
target descriptions for GPUs (the `gpu-compile` extra): programs compile for them on a
CPU-only host; nothing runs.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import re

import jax

from framework import host_env
from framework.errors import ConfigError
from framework.train import chips

# TPU generations: libtpu's topology prefix, whether the slice size counts cores (two a
# chip) or chips, whether two cores form one megacore device, the grid's dimensions.
_TPUS = {
    "v2": ("v2", True, False, 2),
    "v3": ("v3", True, False, 2),
    "v4": ("v4", True, True, 3),
    "v5p": ("v5p", True, True, 3),
    "v5e": ("v5e", False, False, 2),
    "v5litepod": ("v5e", False, False, 2),
    "v6e": ("v6e", False, False, 2),
}
_GPUS = ("a100", "h100", "h200")
EXAMPLES = "v3-8, v4-32, v5e-256, v5p-128, v6e-64, 2x v4-32, h100x8, 2x h100x8"
_NAME = re.compile(r"^(?:(\d+)\s*x\s+)?(\S+)$")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str  # as the user wrote it
    chip: chips.Chip
    platform: str  # tpu | cuda
    topology: str  # libtpu's (`v4:2x2x4`) or the GPU grid (`1x2x8`: slices x hosts x GPUs)
    num_slices: int = 1
    megacore: bool = False
    gpus_per_host: int = 0  # GPUs only
    hosts: int = 0  # GPUs only

    @property
    def num_devices(self) -> int:
        if self.platform == "cuda":
            return self.hosts * self.gpus_per_host
        grid = math.prod(int(d) for d in self.topology.split(":")[1].split("x"))
        return self.num_slices * grid * (1 if self.megacore else self.chip.devices_per_chip)


def chip_grid(num_chips: int, dims: int) -> str:
    """The chip grid of a slice as libtpu names it: 16 chips in 3-D -> `2x2x4`, 256 in
    2-D -> `16x16` (start from 2x2(x1), then double the last of the smallest sides)."""
    if num_chips < 1 or num_chips & (num_chips - 1):
        raise ConfigError(f"a TPU slice of {num_chips} chips: use a power of two")
    if num_chips < 4:
        sides = [1] * (dims - 1) + [num_chips] if dims == 2 else [1, num_chips, 1]
        return "x".join(map(str, sides))
    sides = [2, 2] + [1] * (dims - 2)
    while math.prod(sides) < num_chips:
        smallest = min(sides)
        last = max(i for i, side in enumerate(sides) if side == smallest)
        sides[last] *= 2
    return "x".join(map(str, sides))


def parse(name: str) -> Target:
    """The target a user names (see the module docstring); a one-line ConfigError listing
    examples when the name is not one."""
    match = _NAME.match(name.strip().lower())
    if not match:
        raise ConfigError(f"unknown target {name!r}; examples: {EXAMPLES}")
    copies, base = int(match.group(1) or 1), match.group(2)
    gpu = re.fullmatch(r"(a100|h100|h200)x(\d+)", base)
    if gpu:
        per_host = int(gpu.group(2))
        return Target(
            name, chips.get(gpu.group(1)), "cuda", f"1x{copies}x{per_host}",
            hosts=copies, gpus_per_host=per_host,
        )  # fmt: skip
    tpu = re.fullmatch(r"(v\d[a-z]*)-(\d+)", base)
    if not tpu or tpu.group(1) not in _TPUS or copies < 1:
        raise ConfigError(f"unknown target {name!r}; examples: {EXAMPLES}")
    generation, count = tpu.group(1), int(tpu.group(2))
    prefix, counts_cores, megacore, dims = _TPUS[generation]
    if counts_cores and count % 2:
        raise ConfigError(f"target {name!r}: {generation} slices count cores, two a chip")
    num_chips = count // 2 if counts_cores else count
    if num_chips & (num_chips - 1):
        unit = "cores" if counts_cores else "chips"
        raise ConfigError(f"target {name!r}: {count} {unit} is not a slice; use a power of two")
    chip = chips.get(prefix)
    return Target(name, chip, "tpu", f"{prefix}:{chip_grid(num_chips, dims)}", copies, megacore)


@functools.lru_cache(maxsize=None)
def devices(target: Target) -> tuple[jax.Device, ...]:
    """The devices of every host of `target`, for compiling (not running) programs."""
    if target.platform == "cuda":
        from framework.experiments import gpu_devices  # only when a GPU is asked for

        return tuple(gpu_devices.gpu_devices(target.chip.name, target.hosts, target.gpus_per_host))
    if importlib.util.find_spec("libtpu") is None:
        raise ConfigError(
            f"compiling for {target.name} needs libtpu: pip install -e '.[tpu]' "
            "(the `tpu` extra pins jax[tpu] to this jax)"
        )
    from jax.experimental import topologies

    kwargs = {"chip_config_name": "megacore"} if target.megacore else {}
    try:
        with host_env.libtpu_for_compiling():
            description = topologies.get_topology_desc(
                platform="tpu",
                topology_name=target.topology,
                num_slices=target.num_slices,
                **kwargs,
            )
    except Exception as error:  # libtpu refuses a topology it does not know
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"libtpu has no topology {target.topology!r} ({name_of(target)}): "
                          f"{first}") from None  # fmt: skip
    return tuple(description.devices)


def name_of(target: Target) -> str:
    """`v4-32 = 16 TPU v4 devices (v4:2x2x4, megacore)`: what a target resolves to."""
    extra = ", megacore" if target.megacore else ""
    slices = f", {target.num_slices} slices" if target.num_slices > 1 else ""
    kind = target.chip.name.upper() if target.platform == "cuda" else f"TPU {target.chip.name}"
    return f"{target.name} = {target.num_devices} {kind} devices ({target.topology}{extra}{slices})"
