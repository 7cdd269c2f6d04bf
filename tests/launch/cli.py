"""Helpers to run the launch commands as a user would, in subprocesses."""

import contextlib
import os
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver

from tests.conftest import COMPILE_FAST

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def env(devices: int = 1) -> dict[str, str]:
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {COMPILE_FAST}"
    e["JAX_PLATFORMS"] = "cpu"
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    return e


def command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run(module: str, *args: str, devices: int = 1, timeout: float = 300, extra_env=None):
    return subprocess.run(
        command(module, *args),
        cwd=ROOT,
        env={**env(devices), **(extra_env or {})},
        text=True,
        capture_output=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def parsed_flags(argv: list[str]):
    """Parses `argv` as absl does for a command and yields its positional arguments, for
    calling a launch module's `main` in-process; the flags are as they were afterwards."""
    was_parsed = flags.FLAGS.is_parsed()
    with flagsaver.flagsaver():
        yield flags.FLAGS(argv)
    if not was_parsed:
        flags.FLAGS.unparse_flags()
