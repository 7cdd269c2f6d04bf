"""Accelerator chips: peak bfloat16 FLOP/s, HBM size and HBM bandwidth per JAX device.

One table for the ahead-of-time compile report (`launch.compile`: fits, roofline) and
for the trainer's model-FLOPs utilisation (MFU). Figures are per JAX *device*: on TPU
v2 and v3 each TensorCore is a device (half a chip); on v4 and v5p the two cores of a
chip form one megacore device; v5e and v6e have one core per chip; a GPU is a device.
Peak FLOP/s are dense bfloat16 matrix-unit figures (no sparsity). HBM sizes are the
vendors' (GiB for TPUs, GB for NVIDIA's); bandwidths are bytes per second.
"""

from __future__ import annotations

import dataclasses

GIB = 2**30
GB = 10**9
TERA = 10**12


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str  # as the targets name it: v4, h100, ...
    device_kinds: tuple[str, ...]  # `jax.Device.device_kind` values (GPUs: substrings)
    peak_flops: float  # dense bfloat16 FLOP/s per JAX device
    hbm_bytes: int  # per JAX device
    hbm_bandwidth: float  # bytes/s per JAX device
    devices_per_chip: int = 1
    source: str = ""

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.peak_flops / TERA:.0f} TFLOP/s bf16, "
            f"{self.hbm_bytes / GIB:.1f} GiB HBM, {self.hbm_bandwidth / 1e9:.0f} GB/s per device"
        )


CHIPS: dict[str, Chip] = {
    chip.name: chip
    for chip in (
        # Cloud TPU docs, "TPU v2": 45 TFLOP/s, 16 GiB HBM, 600 GB/s per chip of 2 cores.
        # https://cloud.google.com/tpu/docs/v2
        Chip("v2", ("TPU v2",), 22.5 * TERA, 8 * GIB, 300e9, 2, "cloud.google.com/tpu/docs/v2"),
        # "TPU v3": 123 TFLOP/s, 32 GiB HBM, 900 GB/s per chip of 2 cores.
        # https://cloud.google.com/tpu/docs/v3
        Chip("v3", ("TPU v3",), 61.5 * TERA, 16 * GIB, 450e9, 2, "cloud.google.com/tpu/docs/v3"),
        # "TPU v4": 275 TFLOP/s bf16, 32 GiB HBM2, 1,200 GB/s per chip (megacore).
        # https://cloud.google.com/tpu/docs/v4
        Chip("v4", ("TPU v4",), 275 * TERA, 32 * GIB, 1200e9, 1, "cloud.google.com/tpu/docs/v4"),
        # "TPU v5e": 197 TFLOP/s bf16, 16 GiB HBM2, 819 GB/s per chip.
        # https://cloud.google.com/tpu/docs/v5e
        Chip(
            "v5e",
            ("TPU v5 lite", "TPU v5e"),
            197 * TERA,
            16 * GIB,
            819e9,
            1,
            "cloud.google.com/tpu/docs/v5e",
        ),  # fmt: skip
        # "TPU v5p": 459 TFLOP/s bf16, 95 GiB HBM2e, 2,765 GB/s per chip (megacore).
        # https://cloud.google.com/tpu/docs/v5p
        Chip(
            "v5p",
            ("TPU v5", "TPU v5p"),
            459 * TERA,
            95 * GIB,
            2765e9,
            1,
            "cloud.google.com/tpu/docs/v5p",
        ),  # fmt: skip
        # "TPU v6e" (Trillium): 918 TFLOP/s bf16, 32 GiB HBM, 1,640 GB/s per chip.
        # https://cloud.google.com/tpu/docs/v6e
        Chip(
            "v6e",
            ("TPU v6 lite", "TPU v6e"),
            918 * TERA,
            32 * GIB,
            1640e9,
            1,
            "cloud.google.com/tpu/docs/v6e",
        ),  # fmt: skip
        # NVIDIA A100 datasheet (SXM4 80GB): 312 TFLOP/s bf16 dense, 80 GB, 2,039 GB/s.
        # https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
        Chip("a100", ("A100",), 312 * TERA, 80 * GB, 2039e9, 1, "NVIDIA A100 datasheet"),
        # NVIDIA H100 datasheet (SXM5): 989 TFLOP/s bf16 dense (1,979 with sparsity),
        # 80 GB HBM3, 3.35 TB/s. https://www.nvidia.com/en-us/data-center/h100/
        Chip("h100", ("H100",), 989 * TERA, 80 * GB, 3350e9, 1, "NVIDIA H100 datasheet"),
        # NVIDIA H200 datasheet (SXM): 989 TFLOP/s bf16 dense, 141 GB HBM3e, 4.8 TB/s.
        # https://www.nvidia.com/en-us/data-center/h200/
        Chip("h200", ("H200",), 989 * TERA, 141 * GB, 4800e9, 1, "NVIDIA H200 datasheet"),
    )
}


def get(name: str) -> Chip:
    """The chip named `name` (v2 ... v6e, a100, h100, h200)."""
    if name not in CHIPS:
        raise KeyError(f"unknown chip {name!r}; known: {', '.join(CHIPS)}")
    return CHIPS[name]


def for_device_kind(device_kind: str) -> Chip | None:
    """The chip of a `jax.Device.device_kind` (e.g. `TPU v4`, `NVIDIA H100 80GB HBM3`),
    or None when it is not in the table (CPUs, other accelerators)."""
    for chip in CHIPS.values():
        if chip.name.startswith("v"):
            if device_kind in chip.device_kinds:
                return chip
        elif any(kind in device_kind for kind in chip.device_kinds):
            if chip.name == "a100" and "40GB" in device_kind:  # the 40 GB part's HBM2
                return dataclasses.replace(chip, hbm_bytes=40 * GB, hbm_bandwidth=1555e9)
            return chip
    return None


def mfu(flops_per_step_per_device: float, steps_per_sec: float, chip: Chip) -> float:
    """Model-FLOPs utilisation: the FLOPs a device does per second over its peak."""
    return flops_per_step_per_device * steps_per_sec / chip.peak_flops
