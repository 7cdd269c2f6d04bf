"""Command lines for Cloud TPU VMs: create one, copy the checkout there, run, watch, stop.

Every function builds argv lists for `gcloud compute tpus tpu-vm ...` and runs nothing;
`execute` runs them, or only prints them with `dry_run`. On a pod slice (several hosts)
`scp` and `ssh` go to every host (`--worker=all`): each host runs the same command and
`jax.distributed.initialize()` finds its peers by itself.

Preemption: `run` starts `launch.train`, which checkpoints periodically and on SIGTERM and
resumes from its workdir's last checkpoint when started again. A preempted spot VM must
be made again (`delete`, `create`, `setup`); `run` with the same command then resumes.
`stop` sends SIGTERM to the run (it checkpoints and exits), leaving the VM up.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import shutil
import subprocess
from typing import Callable, Sequence

from framework.errors import ConfigError, RunError
from framework.experiments import report

DEFAULT_REMOTE_DIR = "~/adaptive-compute"
# Logs of runs with a gs:// workdir, on each host's disk until the run ends.
LOCAL_LOG_ROOT = "~/adaptive-compute-logs"
DEFAULT_PYTHON = "python3.11"  # jax 0.10 needs Python >= 3.11; Ubuntu 22.04's python3 is 3.10
# Not copied by `setup`: the git history, local virtualenv, run outputs, prepared data
# and caches (GNU tar patterns; a leading ./ anchors at the checkout's top).
DEFAULT_EXCLUDES = (
    "./.git",
    "./.venv",
    "./runs",
    "./data",
    "__pycache__",
    "*.egg-info",
    "./.pytest_cache",
    "./.ruff_cache",
)
GCLOUD_MISSING = (
    "gcloud is not on the PATH; install the Google Cloud CLI "
    "(https://cloud.google.com/sdk/docs/install) or use --dry_run"
)
_TPU_VM = ("gcloud", "compute", "tpus", "tpu-vm")

# Generation -> (largest size on one host, size per host above that). The size after the
# dash counts TensorCores for v2/v3/v4/v5p (4 chips of 2 cores per host) and chips for
# v5e (`v5litepod`) and v6e (up to 8 chips on one host, 4 per host in larger slices).
_HOST_SIZES = {
    "v2": (8, 8),
    "v3": (8, 8),
    "v4": (8, 8),
    "v5p": (8, 8),
    "v5litepod": (8, 4),
    "v6e": (8, 4),
}
# The TPU runtime (`--version`) each generation's VMs need.
_RUNTIMES = {
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}
_DEFAULT_RUNTIME = "tpu-ubuntu2204-base"


def num_hosts(accelerator_type: str) -> int | None:
    """How many hosts (VMs) a slice of `accelerator_type` has, e.g. 1 for `v4-8`, 4 for
    `v4-32` or `v5litepod-16`; None for a type not in the table (callers treat it as a
    pod, since `--worker=all` is valid for one host too)."""
    match = re.fullmatch(r"(v\d+[a-z]*)-(\d+)", accelerator_type)
    if not match or match.group(1) not in _HOST_SIZES:
        return None
    single, per_host = _HOST_SIZES[match.group(1)]
    size = int(match.group(2))
    return 1 if size <= single else math.ceil(size / per_host)


def is_pod(accelerator_type: str) -> bool:
    """Whether the slice has several hosts (or an unknown type: commands go to all)."""
    hosts = num_hosts(accelerator_type)
    return hosts is None or hosts > 1


def default_version(accelerator_type: str) -> str:
    """The TPU runtime for the generation: `tpu-ubuntu2204-base` for v2-v4, the
    `v2-alpha-*` runtimes for v5e, v5p and v6e."""
    return _RUNTIMES.get(accelerator_type.split("-")[0], _DEFAULT_RUNTIME)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TpuVm:
    """A TPU VM (one host) or pod slice (several), as `gcloud` names it."""

    name: str
    zone: str
    accelerator_type: str = "v4-8"
    version: str | None = None  # None: default_version(accelerator_type)
    project: str | None = None
    spot: bool = False

    @property
    def runtime(self) -> str:
        return self.version or default_version(self.accelerator_type)

    @property
    def is_pod(self) -> bool:
        return is_pod(self.accelerator_type)


def remote_path(path: str) -> str:
    """`path` quoted for the remote shell; a leading `~` becomes `"$HOME"` so that it
    still expands there (a quoted `~` would not)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        rest = path[2:].rstrip("/")
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"'
    return shlex.quote(path)


def _where(vm: TpuVm) -> list[str]:
    return [f"--zone={vm.zone}"] + ([f"--project={vm.project}"] if vm.project else [])


def _all_workers(vm: TpuVm) -> list[str]:
    return ["--worker=all"] if vm.is_pod else []


def _ssh(vm: TpuVm, remote_command: str, workers: list[str]) -> list[str]:
    return [*_TPU_VM, "ssh", vm.name, *_where(vm), *workers, f"--command={remote_command}"]


def create(vm: TpuVm) -> list[str]:
    """Creates the VM (all hosts of a pod) with the TPU runtime."""
    return [
        *_TPU_VM,
        "create",
        vm.name,
        *_where(vm),
        f"--accelerator-type={vm.accelerator_type}",
        f"--version={vm.runtime}",
        *(["--spot"] if vm.spot else []),
    ]


def setup(
    vm: TpuVm,
    source_dir: str,
    remote_dir: str = DEFAULT_REMOTE_DIR,
    python: str = DEFAULT_PYTHON,
    excludes: Sequence[str] = DEFAULT_EXCLUDES,
) -> list[list[str]]:
    """Copies the checkout to every host and installs it there with `.[tpu]`.

    The working tree is copied as it is, uncommitted changes included, less `excludes`
    (by default git history, .venv, runs, data and caches: prepare data on the VM, or
    keep it under gs://). Files are unpacked over `remote_dir`, so a second `setup`
    updates the copy and keeps its virtualenv (files deleted locally stay there).
    `python` (installed with apt when missing) makes `remote_dir/.venv`.
    """
    tarball = f"/tmp/{vm.name}-source.tar.gz"
    remote_tarball = "adaptive-compute-source.tar.gz"  # in the remote home directory
    home_tarball = remote_path(f"~/{remote_tarball}")
    where = remote_path(remote_dir)
    py = shlex.quote(python)
    install_python = (
        f'{py} -c "import ensurepip" 2> /dev/null || '
        f"{{ sudo apt-get update -qq && sudo apt-get install -y -qq {py} {py}-venv; }}"
    )
    remote = " && ".join(
        [
            f"mkdir -p {where}",
            f"tar -xzf {home_tarball} -C {where}",
            f"rm {home_tarball}",
            f"cd {where}",
            f"{{ {install_python}; }}",
            f"{py} -m venv .venv",
            ".venv/bin/pip install -q --upgrade pip",
            '.venv/bin/pip install -q -e ".[tpu]"',
        ]
    )
    return [
        ["tar", "-czf", tarball, *(f"--exclude={e}" for e in excludes), "-C", source_dir, "."],
        [*_TPU_VM, "scp", tarball, f"{vm.name}:{remote_tarball}", *_where(vm), *_all_workers(vm)],
        _ssh(vm, remote, _all_workers(vm)),
    ]


def _log_paths(workdir: str) -> tuple[str, str, str | None]:
    """For the remote shell: the directory and file of the log each host writes, and the
    object a gs:// workdir's log is copied to at the end (None: written in the workdir)."""
    per_host = 'worker_"$(hostname)".log'  # hostnames end in -w-<worker id>
    if "://" in workdir:
        local_dir = remote_path(f"{LOCAL_LOG_ROOT}/{report.slug(workdir)}")
        return (
            local_dir,
            f"{local_dir}/worker.log",
            shlex.quote(f"{workdir.rstrip('/')}/logs/") + per_host,
        )
    log_dir = remote_path(f"{workdir.rstrip('/')}/logs")
    return log_dir, f"{log_dir}/{per_host}", None


def run(
    vm: TpuVm, command: Sequence[str], workdir: str, remote_dir: str = DEFAULT_REMOTE_DIR
) -> list[str]:
    """Starts `command` (`python -m launch...`, run with remote_dir's virtualenv) on every
    host, detached from the ssh session, and returns at once.

    Each host appends to `workdir/logs/worker_<hostname>.log` (so a resumed run's log
    follows the one before). With a gs:// workdir the log
    is written on the host's disk (`~/adaptive-compute-logs/<workdir slug>/worker.log`,
    what `logs` follows) and copied to `workdir/logs/` when the command ends, as object
    stores cannot append to a file. Running the same command again resumes from the
    workdir's checkpoints.
    """
    command = list(command)
    if command and command[0] in ("python", "python3"):
        command[0] = ".venv/bin/python"
    started = shlex.join(command)
    log_dir, log, copy_to = _log_paths(workdir)
    if copy_to is None:
        job = f"nohup setsid {started} >> {log} 2>&1 < /dev/null &"
    else:
        # `stop`'s pkill matches this shell too: the trap keeps it waiting for the command
        # (which saves a checkpoint on SIGTERM), then it copies the log and exits.
        script = (
            f"trap true TERM; {started} >> {log} 2>&1 < /dev/null; status=$?; "
            f"gcloud storage cp {log} {copy_to}; exit $status"
        )
        job = f"nohup setsid bash -c {shlex.quote(script)} > /dev/null 2>&1 < /dev/null &"
    remote = (
        f"cd {remote_path(remote_dir)} && mkdir -p {log_dir} && {{ {job} }} && "
        'echo "started on $(hostname)"'
    )
    return _ssh(vm, remote, _all_workers(vm))


def status(vm: TpuVm) -> list[str]:
    """Prints the VM's state (READY, PREEMPTED, ...), health and accelerator type."""
    return [
        *_TPU_VM,
        "describe",
        vm.name,
        *_where(vm),
        "--format=value(state,health,acceleratorType)",
    ]


def logs(
    vm: TpuVm,
    workdir: str,
    worker: int = 0,
    lines: int = 100,
    remote_dir: str = DEFAULT_REMOTE_DIR,
) -> list[str]:
    """Follows (`tail -F`) the log that `run` writes on one host; Ctrl-C ends it."""
    hosts = num_hosts(vm.accelerator_type)
    if worker < 0:
        raise ConfigError(f"--worker={worker}: workers are numbered from 0")
    if hosts is not None and worker >= hosts:
        raise ConfigError(f"--worker={worker}: {vm.accelerator_type} has workers 0-{hosts - 1}")
    _, log, _ = _log_paths(workdir)
    workers = [f"--worker={worker}"] if vm.is_pod or worker else []
    return _ssh(vm, f"cd {remote_path(remote_dir)} && tail -n {lines} -F {log}", workers)


def stop(vm: TpuVm) -> list[str]:
    """Sends SIGTERM to the `python -m launch.*` processes on every host: a trainer saves
    a checkpoint and exits, so `run` resumes it later. The VM stays up (see `delete`)."""
    remote = (
        r'pkill -TERM -f "python -m launch\." || '
        'echo "no launch job running on $(hostname)"'
    )
    return _ssh(vm, remote, _all_workers(vm))


def delete(vm: TpuVm) -> list[str]:
    """Deletes the VM (all hosts), without asking."""
    return [*_TPU_VM, "delete", vm.name, *_where(vm), "--quiet"]


def describe_command(command: Sequence[str]) -> str:
    """`command` as a shell line, cut short for an error message."""
    line = shlex.join(command)
    return line if len(line) <= 120 else line[:117] + "..."


def execute(
    commands: Sequence[Sequence[str]],
    dry_run: bool,
    print_fn: Callable[[str], None] = print,
) -> None:
    """Runs `commands` one after another, or with `dry_run` prints them (shell-quoted).

    Raises ConfigError (one line) when a program is not installed, before running any,
    and RunError naming the command that failed and its exit status.
    """
    if dry_run:
        for command in commands:
            print_fn(shlex.join(command))
        return
    for program in dict.fromkeys(command[0] for command in commands):
        if shutil.which(program) is None:
            if program == "gcloud":
                raise ConfigError(GCLOUD_MISSING)
            raise ConfigError(f"{program} is not on the PATH (or use --dry_run)")
    for command in commands:
        returncode = subprocess.run(list(command), check=False).returncode
        if returncode:
            how = (
                f"was killed by signal {-returncode}"
                if returncode < 0
                else f"failed with exit status {returncode}"
            )
            raise RunError(f"{describe_command(command)} {how}")
