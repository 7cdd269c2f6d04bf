"""Helpers to run the launch commands as a user would, in subprocesses."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def env(devices: int = 1) -> dict[str, str]:
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
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
