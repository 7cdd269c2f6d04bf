"""Flags and helpers shared by the launchers (launch/tpu_vm.py, launch/slurm.py and
launch/sweep.py), defined here once so that any of them can import the others."""

from __future__ import annotations

from typing import Sequence

from absl import flags

from framework.errors import ConfigError

DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print every command/script instead of running it.")


def workdir_of(command: Sequence[str]) -> str:
    """The `--workdir=DIR` (or `--workdir DIR`) that `command`, the run to launch, names.

    The last one counts, as in absl. Raises ConfigError when it names none: launchers
    place logs and scripts there.
    """
    workdir = ""
    for i, arg in enumerate(command):
        if arg.startswith("--workdir="):
            workdir = arg.split("=", 1)[1]
        elif arg == "--workdir" and i + 1 < len(command):
            workdir = command[i + 1]
    if workdir:
        return workdir
    shown = " ".join(command) or "(none)"
    raise ConfigError(f"the command after -- needs --workdir=DIR (its logs go there): {shown}")
