"""What accelerators a host has, and the environment JAX's plugins need without them.

The `tpu` / `test` extras install libtpu and the `gpu-compile` extra XLA's CUDA plugin,
for compiling for TPU slices and GPU hosts anywhere (`launch.compile`). On a host
without those chips the plugins would still start with JAX: libtpu asks the cloud
metadata server what host it is on and the CUDA plugin looks for a driver, each failing
with a screen of warnings on every command. `quiet()` prevents that (defaults only; a
user's own settings win): on a host with no accelerator device files JAX runs on the
CPU, and libtpu does not query the metadata server.
"""

from __future__ import annotations

import glob
import os


def on_tpu_host() -> bool:
    """Whether this host has TPU chips attached (their device files)."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def on_gpu_host() -> bool:
    """Whether this host has NVIDIA or AMD GPUs attached (their device files)."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd"))


def quiet(compiling: bool = False) -> None:
    """Sets the plugins' environment before JAX starts its backends.

    `compiling`: also what libtpu's topology descriptions need to start without a TPU
    (any valid accelerator type: the topology is given explicitly) and letting several
    processes load libtpu (compiles side by side).
    """
    if on_tpu_host():
        return
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    if not on_gpu_host():
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        # The CUDA plugin still initialises; without a driver its version check fails.
        os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    if compiling:
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v4-8")
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
