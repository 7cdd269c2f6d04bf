"""What accelerators a host has, and the environment JAX's plugins need without them.

The `tpu` / `test` extras install libtpu and the `gpu-compile` extra XLA's CUDA plugin,
for compiling for TPU slices and GPU hosts anywhere (`launch.compile`). On a host
without those chips the plugins would still start with JAX: libtpu asks the cloud
metadata server what host it is on and the CUDA plugin looks for a driver, each failing
with a screen of warnings on every command. `quiet()` prevents that (defaults only; a
user's own settings win): on a host with no accelerator device files JAX runs on the
CPU, and libtpu does not query the metadata server. `libtpu_for_compiling()` is what
libtpu's topology descriptions need there.
"""

from __future__ import annotations

import contextlib
import glob
import os
from typing import Iterator


def on_tpu_host() -> bool:
    """Whether this host has TPU chips attached (their device files)."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def on_gpu_host() -> bool:
    """Whether this host has NVIDIA or AMD GPUs attached (their device files)."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd"))


def quiet() -> None:
    """Sets the plugins' environment (defaults only) before JAX starts its backends."""
    if on_tpu_host():
        return
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    if not on_gpu_host():
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        # The CUDA plugin still initialises; without a driver its version check fails.
        os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")


@contextlib.contextmanager
def libtpu_for_compiling() -> Iterator[None]:
    """While libtpu first starts for topology descriptions on a host without TPUs: any
    valid accelerator type and worker list (the topology is given explicitly) so that it
    starts quietly, and several processes may load it (compiles side by side). The
    variables are restored afterwards: a worker list would make later commands started
    from this process think they run on a TPU pod."""
    if on_tpu_host():
        yield
        return
    wanted = {
        "TPU_SKIP_MDS_QUERY": "1",
        "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
        "TPU_ACCELERATOR_TYPE": "v4-8",
        "TPU_WORKER_HOSTNAMES": "localhost",
    }
    added = [key for key in wanted if key not in os.environ]
    os.environ.update({key: wanted[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
