"""JAX devices of an NVIDIA GPU target, for compiling a program for it on a host without GPUs.

`gpu_devices("h100", hosts=2)` gives the 16 devices of two 8-GPU H100 hosts. They belong to
a compile-only client: a `Mesh` over them and `jax.jit(...).lower(...).compile()` compile
for that GPU (memory analysis, the compiled HLO), and nothing runs. The GPU is described to
XLA by a target spec in `gpu_specs/` (XLA's `GpuTargetConfigProto` in text format, each
figure with its public source); XLA's GPU compiler comes from the CUDA PJRT plugin
(`jax-cuda12-pjrt`) and its PTX assembler `ptxas` from NVIDIA's `nvidia-cuda-nvcc-cu12`.

Compile with `lowered.compile(compiler_options=COMPILER_OPTIONS)` (see there). What a
deviceless GPU compile does not give (jax 0.10.2): `cost_analysis()` is None, both of the
lowered and of the compiled program, so `cpu_cost_analysis` counts the FLOPs of the
lowered program on the CPU backend instead; and XLA does not refuse a program larger than
the GPU's memory (it rematerialises towards a limit below the spec's memory size, then
compiles whatever it reached), so compare `memory_analysis()` with the chip's HBM yourself.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pathlib
import re
from typing import Any

import jax

from framework.errors import ConfigError

# Each GPU target's spec file in gpu_specs/, by the chip names of framework/train/chips.py.
SPEC_FILES = {
    "a100": "a100_sxm_80gb.txtpb",
    "h100": "h100_sxm.txtpb",
    "h200": "h200_sxm.txtpb",
}
SPEC_DIR = pathlib.Path(__file__).parent / "gpu_specs"
INSTALL_HINT = "GPU targets need the CUDA compiler and plugin: pip install -e '.[gpu-compile]'"
# The CUDA PJRT plugin (XLA's GPU compiler), from the `jax-cuda12-pjrt` package.
PLUGIN_MODULE = "jax_plugins.xla_cuda12"
# CUDA installs where XLA looks for ptxas and libdevice when jax found no nvcc package.
CUDA_ROOTS = ("/usr/local/cuda", "/opt/cuda")
# Pass to `lowered.compile(compiler_options=...)` for these devices. Without a GPU, XLA
# cannot autotune its Triton GEMM kernels, and its default tiling fails on some shapes
# (`Couldn't find output tile sizes that satisfy hlo: f32[130,32] dot`, a ViT's 130 tokens,
# jax 0.10.2): every matmul goes to cuBLAS instead, which a real GPU's autotuner may pick.
COMPILER_OPTIONS: dict[str, Any] = {"xla_gpu_enable_triton_gemm": False}


def spec_text(chip: str) -> str:
    """The target spec of `chip` (a100, h100, h200) as protobuf text."""
    if chip not in SPEC_FILES:
        raise ConfigError(f"no GPU target spec for chip {chip!r}; known: {', '.join(SPEC_FILES)}")
    return (SPEC_DIR / SPEC_FILES[chip]).read_text()


def spec_field(chip: str, field: str) -> str:
    """The value of a scalar `field` of `chip`'s spec (e.g. device_memory_size), as text."""
    match = re.search(rf'^\s*{field}:\s*(?:"([^"]*)"|(\S+))', spec_text(chip), re.MULTILINE)
    if match is None:
        raise KeyError(f"{field} is not in the {chip} spec")
    return match.group(1) if match.group(1) is not None else match.group(2)


def gpu_devices(chip: str, hosts: int = 1, gpus_per_host: int = 8) -> list[jax.Device]:
    """The devices of `hosts` hosts of `gpus_per_host` GPUs `chip` each, host by host.

    Each host is its own NVLink domain (an HGX / DGX server; hosts talk over the network),
    so the topology, slices x hosts per slice x GPUs per host, is `hosts`x1x`gpus_per_host`
    (XLA compiles the same program for `1x{hosts}x{gpus}`: the split only sets each
    device's host). Device i is on host i // gpus_per_host (its `process_index`), as on the
    real machines. Compile with `COMPILER_OPTIONS`. Raises ConfigError with the install
    command when the CUDA plugin or ptxas is missing.
    """
    if hosts < 1 or gpus_per_host < 1:
        raise ConfigError(
            f"a GPU target needs hosts and gpus_per_host >= 1, got {hosts} and {gpus_per_host}"
        )
    return list(_topology_devices(chip, hosts, gpus_per_host))


@functools.lru_cache(maxsize=None)
def _topology_devices(chip: str, hosts: int, gpus_per_host: int) -> tuple[jax.Device, ...]:
    target_config = spec_text(chip)
    _prepare_toolchain()
    from jax.experimental import topologies

    try:
        topology = topologies.get_topology_desc(
            platform="cuda",
            topology_name="",
            topology=f"{hosts}x1x{gpus_per_host}",
            target_config=target_config,
        )
    except NotImplementedError as error:  # the plugin is there but jax did not load it
        raise ConfigError(
            f"the CUDA plugin did not load ({error}): start jax with JAX_PLATFORMS=cpu or "
            "JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1 to compile for GPUs on a host without one"
        ) from error
    return tuple(topology.devices)


def _find_module(name: str) -> Any:
    """The import spec of module `name`, or None when it (or its package) is not installed."""
    try:
        return importlib.util.find_spec(name)
    except (ModuleNotFoundError, ValueError):
        return None


def _cuda_dir() -> str | None:
    """The CUDA folder (bin/ptxas, nvvm/libdevice) that XLA's GPU compiler will use, or None.

    jax finds the `nvidia-cuda-nvcc-cu12` package (or `$CUDA_ROOT`) when it is imported and
    passes its folder to every compile as `--xla_gpu_cuda_data_dir`, which XLA searches
    first; without it XLA looks in a CUDA install such as /usr/local/cuda.
    """
    from jax._src import lib

    for root in (getattr(lib, "cuda_path", None), *CUDA_ROOTS):
        if root and os.path.isfile(os.path.join(root, "bin", "ptxas")):
            return root
    return None


def _prepare_toolchain() -> None:
    """Checks for the CUDA plugin and ptxas (ConfigError with the install command if either
    is missing), and lets the plugin load on a host without CUDA: its CUDA version check
    needs the CUDA runtime libraries, which a compile does not, so it is skipped unless the
    caller set JAX_SKIP_CUDA_CONSTRAINTS_CHECK (read when jax first looks for plugins)."""
    if _find_module(PLUGIN_MODULE) is None or _cuda_dir() is None:
        raise ConfigError(INSTALL_HINT)
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")


def cpu_cost_analysis(lowered: jax.stages.Lowered) -> dict[str, float]:
    """XLA's cost analysis (flops, bytes accessed, ...) of a lowered program, counted on the
    CPU backend: for the whole program over all devices, before partitioning and fusion.

    A deviceless GPU compile gives none (`cost_analysis()` is None); divide by the number
    of devices for a per-device figure of a program split evenly across them.
    """
    from jax._src.lib import xla_client

    module = lowered.compiler_ir("hlo").get_hlo_module()
    cpu_client = jax.devices("cpu")[0].client
    return dict(xla_client._xla.hlo_module_cost_analysis(cpu_client, module))
