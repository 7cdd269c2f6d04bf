"""Command lines for Cloud TPU VMs: create one, copy the checkout there, run, watch, stop.

Every function builds argv lists for `gcloud compute tpus tpu-vm ...` and runs nothing;
`execute` runs them, or only prints them with `dry_run`. On a pod slice (several hosts)
`scp` and `ssh` go to every host (`--worker=all`): each host runs the same command and
`jax.distributed.initialize()` finds its peers by itself.

Preemption: `run` starts `launch.train`, which checkpoints periodically and on SIGTERM and
resumes from its workdir's last checkpoint when started again. A preempted spot VM must
be made again (`delete`, `create`, `setup`); `run` with the same command then resumes.
`watch` does that by itself: it polls the VM's state and, when the VM is PREEMPTED,
TERMINATED or gone, recreates it, sets it up and runs the command again (bounded
restarts, exponential backoff), until the command has finished. `run`'s wrapper appends
`END_MARK` with the command's exit status to each host's log, which is how `watch` tells
a finished command from one that was stopped. `stop` sends SIGTERM to the run (it
checkpoints and exits), leaving the VM up.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import shutil
import subprocess
import time
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
# The last line `run`'s wrapper writes to each host's log, e.g. `... exit status 0` (the
# command finished) or `... exit status 0, after SIGTERM` (stopped: preempted or `stop`).
END_MARK = "launch.tpu_vm: the command ended with exit status"
_END = re.compile(re.escape(END_MARK) + r" (\d+)(, after SIGTERM)?")
LOST_STATES = ("PREEMPTED", "TERMINATED", "NOT_FOUND")  # the VM must be made again
LOST_PROCESS_EXIT = 3  # framework.launchers.multihost: a host was lost, a rerun resumes

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
    workdir's checkpoints. A wrapper shell waits for the command and appends
    `END_MARK <exit status>` to the log (`, after SIGTERM` when it was signalled too:
    a preemption or `stop`).
    """
    command = list(command)
    if command and command[0] in ("python", "python3"):
        command[0] = ".venv/bin/python"
    started = shlex.join(command)
    log_dir, log, copy_to = _log_paths(workdir)
    # `stop`'s pkill matches the wrapper too: its trap notes the SIGTERM and it goes on
    # waiting for the command (which saves a checkpoint on SIGTERM).
    script = (
        f"trap term=1 TERM; {started} >> {log} 2>&1 < /dev/null & pid=$!; "
        "wait $pid; status=$?; while kill -0 $pid 2> /dev/null; do wait $pid; status=$?; done; "
        f'echo "{END_MARK} $status${{term:+, after SIGTERM}}" >> {log}; '
        + (f"gcloud storage cp {log} {copy_to}; " if copy_to else "")
        + "exit $status"
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


def state(vm: TpuVm) -> list[str]:
    """Prints the VM's state alone (READY, PREEMPTED, ...), for `watch`."""
    return [*_TPU_VM, "describe", vm.name, *_where(vm), "--format=value(state)"]


def run_state(vm: TpuVm, workdir: str, remote_dir: str = DEFAULT_REMOTE_DIR) -> list[str]:
    """Prints the last line of worker 0's log, then `running` or `not running` (whether
    a `python -m launch.*` process runs there), for `watch`."""
    _, log, _ = _log_paths(workdir)
    remote = (
        f"cd {remote_path(remote_dir)} && tail -n 1 {log} 2> /dev/null; "
        # [.]: the pattern does not match this command's own line
        'if pgrep -f "python -m launch[.]" > /dev/null; then echo running; '
        "else echo not running; fi"
    )
    return _ssh(vm, remote, ["--worker=0"] if vm.is_pod else [])


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


# ---------------------------------------------------------------- watching a spot VM


@dataclasses.dataclass(frozen=True)
class WatchOptions:
    """How `watch` polls and how often and how patiently it restarts."""

    poll_secs: float = 60.0
    max_restarts: int = 20
    backoff_secs: float = 60.0  # before the first restart; doubled for each one after
    max_backoff_secs: float = 1800.0


def _capture(command: Sequence[str]) -> tuple[int, str, str]:
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no message")


def vm_state(vm: TpuVm) -> tuple[str, str]:
    """(state, message): the VM's state from gcloud (`NOT_FOUND` for a VM that does not
    exist, `UNKNOWN` when gcloud fails otherwise, with its first line as the message)."""
    code, out, err = _capture(state(vm))
    if code == 0 and out.strip():
        return out.split()[0], ""
    if "NOT_FOUND" in err or "not found" in err.lower():
        return "NOT_FOUND", ""
    return "UNKNOWN", _first_line(err)


def command_end(vm: TpuVm, workdir: str, remote_dir: str) -> tuple[bool, int | None, bool]:
    """(whether a launch process runs on worker 0, the exit status its log's last line
    records or None, whether that end came after a SIGTERM)."""
    code, out, _ = _capture(run_state(vm, workdir, remote_dir))
    lines = out.strip().splitlines()
    if code != 0 or not lines:
        return True, None, False  # no answer: assume it goes on, ask again next time
    running = lines[-1].strip() == "running"
    end = _END.search(lines[-2]) if len(lines) > 1 else None
    if end is None:
        return running, None, False
    return running, int(end.group(1)), bool(end.group(2))


Steps = Sequence[tuple[str, Sequence[Sequence[str]]]]  # (name, its commands), in order


def restart_steps(
    vm: TpuVm, setup_commands: Sequence[Sequence[str]], run_command: Sequence[str]
) -> list[tuple[str, list[list[str]]]]:
    """What `watch` does to make a lost VM again: delete, create, setup, run."""
    return [
        ("delete", [delete(vm)]),
        ("create", [create(vm)]),
        ("setup", [list(c) for c in setup_commands]),
        ("run", [list(run_command)]),
    ]


def watch(
    vm: TpuVm,
    restart: Steps,
    workdir: str,
    remote_dir: str = DEFAULT_REMOTE_DIR,
    options: WatchOptions = WatchOptions(),
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Watches a run started with `run` until its command has finished, making the VM
    again when it is lost.

    Every `poll_secs` it asks gcloud for the VM's state. READY: it reads the end of
    worker 0's log (`command_end`); exit status 0 (not after a SIGTERM) means finished,
    and `watch` returns; another exit status raises RunError (a failing command is not
    restarted), except `LOST_PROCESS_EXIT` (a host of the slice was lost) and a command
    that is gone without an end line (its host restarted), which get the `run` step of
    `restart` again. PREEMPTED, TERMINATED or NOT_FOUND: after a backoff
    (`backoff_secs`, doubled for each restart in a row without the command seen
    running, at most `max_backoff_secs`) it runs the `restart` steps
    (`restart_steps`: delete, create, setup, run; no delete for a VM that is gone), at
    most `max_restarts` times in all; then raises RunError. Each event is one `log`
    line. A KeyboardInterrupt (Ctrl-C) ends the watch and leaves the run as it is.
    """
    if shutil.which("gcloud") is None:
        raise ConfigError(GCLOUD_MISSING)
    restarts, streak = 0, 0
    shown = None  # the last state line logged, so that each change is logged once

    def note(message: str) -> None:
        nonlocal shown
        if message != shown:
            log(message)
            shown = message

    def start_again(steps: Steps, why: str) -> None:
        nonlocal restarts, streak, shown
        shown = None
        restarts += 1
        if restarts > options.max_restarts:
            raise RunError(
                f"{vm.name}: {why}, and the watch has restarted it {options.max_restarts} "
                "times (--watch_max_restarts): stopped watching. The workdir keeps its "
                "checkpoints: make the VM again (delete, create, setup, run) to resume"
            )
        delay = min(options.backoff_secs * 2**streak, options.max_backoff_secs)
        streak += 1
        names = ", ".join(name for name, _ in steps)
        log(
            f"{vm.name}: {why}: restart {restarts} of {options.max_restarts} in {delay:g} s "
            f"({names})"
        )
        sleep(delay)
        try:
            execute([c for _, commands in steps for c in commands], dry_run=False)
        except RunError as e:
            log(f"{vm.name}: restart {restarts} failed: {e}; trying again")
            return
        log(f"{vm.name}: restart {restarts} started the command again; watching")

    while True:
        current, message = vm_state(vm)
        if current == "READY":
            running, status, after_term = command_end(vm, workdir, remote_dir)
            if running:
                streak = 0
                note(f"{vm.name}: READY, the command is running")
            elif status == 0 and not after_term:
                log(f"{vm.name}: the command finished (exit status 0): stopped watching")
                return
            elif after_term:
                note(
                    f"{vm.name}: READY, the command stopped on SIGTERM (a preemption "
                    "coming, or `stop`): watching for a preemption"
                )
            elif status is None or status == LOST_PROCESS_EXIT:
                why = (
                    "the command is gone without an end line (its host restarted?)"
                    if status is None
                    else f"the command lost a host (exit status {LOST_PROCESS_EXIT})"
                )
                start_again([step for step in restart if step[0] == "run"], why)
            else:
                raise RunError(
                    f"{vm.name}: the command ended with exit status {status} (see its log: "
                    "python -m launch.tpu_vm logs): not restarted; stopped watching"
                )
        elif current in LOST_STATES:
            gone = current == "NOT_FOUND"  # nothing to delete
            start_again([s for s in restart if not (gone and s[0] == "delete")], f"it is {current}")
        elif current == "UNKNOWN":
            note(f"{vm.name}: gcloud cannot say its state ({message}); asking again")
        else:
            note(f"{vm.name}: {current}")
        sleep(options.poll_secs)
