"""libtpu on a host without TPUs: quiet, and shareable between processes.

libtpu (installed by the `tpu` and `test` extras, for compiling for TPU slices anywhere)
asks the cloud metadata server what host it is on when JAX starts; off a TPU VM that
fails with a screen of warnings on every command. `quiet_off_tpu()` tells it not to ask
when the host has no TPU device files, and lets several processes load it (compiles side
by side). A TPU VM keeps its own settings.
"""

from __future__ import annotations

import glob
import os


def on_tpu_host() -> bool:
    """Whether this host has TPU chips attached (their device files)."""
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def quiet_off_tpu(compiling: bool = False) -> None:
    """Sets libtpu's environment (defaults only) before JAX starts its backends.

    `compiling`: also the values that libtpu's topology descriptions need to start
    without a TPU (any valid accelerator type; the topology is given explicitly).
    """
    if on_tpu_host():
        return
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    if compiling:
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v4-8")
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
