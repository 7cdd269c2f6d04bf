"""sbatch scripts for SLURM GPU clusters: one command, or a sweep as a job array.

The script runs one task per node: `srun` starts the command once on each host, and
`jax.distributed.initialize()` (called by `framework.app` when SLURM_JOB_ID is set)
finds its peers from SLURM's environment. JAX would then bind each process to the one
GPU numbered SLURM_LOCALID; the script sets JAX_LOCAL_DEVICE_IDS so that the process
drives all `gpus_per_node` GPUs of its host instead. `srun --kill-on-bad-exit` ends
every host's process when one fails, rather than leaving the others waiting for it.

Time limits and preemption: the job asks SLURM for USR1 `signal_grace` seconds before
its time limit (`--signal=B:USR1@<grace>`, to the batch shell only), is requeueable
(`--requeue`) and appends to its output file across restarts (`--open-mode=append`). The
batch shell runs the command in the background and waits for it; on USR1 (the time
limit) or TERM (scancel, preemption) it passes SIGTERM to the run's tasks with `scancel
--signal=TERM` (srun itself would SIGKILL its tasks on a SIGTERM) and keeps waiting, so
the trainer's SIGTERM checkpoint completes (`framework.train.preemption`: it saves, writes
`run.json` with status `stopped` and exits 0). After a USR1 stop that exited 0 and did not
finish the run (its `run.json` does not say `done`), the job requeues itself (`scontrol
requeue`) and the requeued job resumes from the workdir's checkpoint. USR1 rather than
TERM for the limit, so that a cancelled job (scancel sends TERM) is never requeued; a
preempted one is requeued by SLURM itself when the cluster's PreemptMode says so.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from typing import Callable, Sequence

from framework.errors import ConfigError, RunError

SBATCH_MISSING = "sbatch is not on the PATH; submit from a SLURM login node, or use --dry_run"
DEFAULT_SIGNAL_GRACE = 120  # seconds: the trainer's checkpoint must be written in them


@dataclasses.dataclass(frozen=True, kw_only=True)
class SlurmJob:
    """What sbatch is asked for; None leaves a setting to the cluster's defaults."""

    job_name: str
    log_dir: str  # the job's output, LOG_DIR/<job_name>-<job id>.out
    nodes: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    partition: str | None = None
    time: str | None = None  # e.g. 04:00:00 or 2-00:00:00
    account: str | None = None
    extra_sbatch: tuple[str, ...] = ()  # more options, e.g. ("--exclusive", "--mem=0")
    venv: str = ".venv"  # activated on the nodes; relative to the script's chdir
    signal_grace: int = DEFAULT_SIGNAL_GRACE  # seconds before the time limit: SIGTERM
    requeue: bool = True  # after a time-limit stop (and on preemption): back in the queue


def _directive(option: str) -> str:
    if any(c.isspace() for c in option):
        raise ConfigError(f"sbatch option {option!r}: #SBATCH lines take no spaces")
    return f"#SBATCH {option}"


def sbatch_script(
    job: SlurmJob,
    commands: Sequence[str],
    chdir: str,
    max_parallel: int | None = None,
    workdirs: Sequence[str] | None = None,
) -> str:
    """The batch script that runs `commands` (shell lines, e.g. `python -m launch.train
    --config=... --workdir=...`) from `chdir` with the virtualenv active.

    One command is one job; several are a job array, element i running command i, at
    most `max_parallel` at a time (None: as many as the cluster allows). `workdirs[i]` is
    command i's workdir, whose `run.json` tells a finished run from a stopped one (not
    given: a run stopped at the time limit is always requeued).
    """
    if not commands:
        raise ConfigError("no command to run in the sbatch script")
    for command in commands:
        if "\n" in command:
            raise ConfigError(f"a command for sbatch must be one line: {command!r}")
    if job.nodes < 1:
        raise ConfigError(f"--nodes={job.nodes}: must be at least 1")
    if job.signal_grace < 0:
        raise ConfigError(f"--signal_grace={job.signal_grace}: must be at least 0 seconds")
    if workdirs is not None and len(workdirs) != len(commands):
        raise ConfigError(f"{len(workdirs)} workdir(s) for {len(commands)} command(s)")
    array = len(commands) > 1
    options = [
        f"--job-name={job.job_name}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",
    ]
    if job.gpus_per_node:
        options.append(f"--gpus-per-node={job.gpus_per_node}")
    if job.cpus_per_task:
        options.append(f"--cpus-per-task={job.cpus_per_task}")
    for name in ("partition", "time", "account"):
        if getattr(job, name):
            options.append(f"--{name}={getattr(job, name)}")
    output = "%x-%A_%a.out" if array else "%x-%j.out"
    options.append(f"--output={job.log_dir.rstrip('/')}/{output}")
    options.append("--open-mode=append")  # a requeued job adds to its output
    if job.signal_grace:
        options.append(f"--signal=B:USR1@{job.signal_grace}")
    if job.requeue:
        options.append("--requeue")
    if array:
        limit = f"%{max_parallel}" if max_parallel else ""
        options.append(f"--array=0-{len(commands) - 1}{limit}")
    options += [re.sub(r"^#SBATCH\s+", "", line.strip()) for line in job.extra_sbatch]

    lines = ["#!/bin/bash", *(_directive(option) for option in options)]
    lines += [
        "# One task per node: srun starts the command once on each host, and",
        "# jax.distributed.initialize() finds its peers from SLURM's environment.",
        "set -euo pipefail",
        f"cd {shlex.quote(chdir)}",
        f"source {shlex.quote(job.venv.rstrip('/') + '/bin/activate')}",
    ]
    if job.gpus_per_node:
        ids = ",".join(str(i) for i in range(job.gpus_per_node))
        lines += [
            "# Each process drives all GPUs of its node (not only GPU $SLURM_LOCALID).",
            f"export JAX_LOCAL_DEVICE_IDS={ids}",
        ]
    lines += _signal_lines(job)
    # srun does not pass sbatch's --cpus-per-task on to the tasks (Slurm >= 22.05).
    srun = "srun --kill-on-bad-exit=1"
    if job.cpus_per_task:
        srun += f" --cpus-per-task={job.cpus_per_task}"
    wds = [shlex.quote(w) for w in workdirs] if workdirs is not None else ["''"] * len(commands)
    if not array:
        lines += [f"workdir={wds[0]}", f"{srun} {commands[0]} &"]
    else:
        lines.append('case "$SLURM_ARRAY_TASK_ID" in')
        lines += [
            f"  {i}) workdir={w}; {srun} {command} & ;;"
            for i, (command, w) in enumerate(zip(commands, wds))
        ]
        lines.append('  *) echo "no command for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;')
        lines.append("esac")
    lines += _wait_lines(job)
    return "\n".join(lines) + "\n"


def _signal_lines(job: SlurmJob) -> list[str]:
    """The traps that pass a stop on to the run as SIGTERM (see the module docstring)."""
    grace = job.signal_grace
    lines = [
        'echo "== job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname), $(date)"',
        *([f"# SLURM sends USR1 {grace} s before the time limit (see --signal)."] if grace else []),
        "# scancel and preemption send TERM. The run gets SIGTERM (through scancel, to its",
        "# tasks: srun would kill them on a SIGTERM), saves a checkpoint and exits while this",
        "# shell waits for it.",
        "limit=0 stopping=0",
        "stop_run() {  # once: an old Slurm's scancel may signal this shell too",
        '  if [ "$stopping" = 1 ]; then return; fi',
        "  stopping=1",
        '  scancel --signal=TERM "$SLURM_JOB_ID" || true',
        "}",
    ]
    if grace:
        lines.append(
            f'trap \'limit=1; echo "== time limit in about {grace} s: SIGTERM to the run"; '
            "stop_run' USR1"
        )
    lines.append("trap 'echo \"== SIGTERM: passed on to the run\"; stop_run' TERM")
    return lines


def _wait_lines(job: SlurmJob) -> list[str]:
    """Waiting for the run (a trap interrupts `wait`), then requeueing a time-limit stop."""
    lines = [
        "run=$!",
        "while :; do",
        '  status=0; wait "$run" || status=$?',
        '  kill -0 "$run" 2>/dev/null || break',
        "done",
    ]
    if job.signal_grace and job.requeue:
        lines += [
            "# Stopped with a checkpoint for the time limit, not finished: requeue and resume.",
            'if [ "$limit" = 1 ] && [ "$status" = 0 ] && '
            '! grep -qs \'"status": "done"\' "$workdir/run.json"; then',
            '  echo "== requeueing job $SLURM_JOB_ID: the run resumes from its checkpoint"',
            '  scontrol requeue "$SLURM_JOB_ID"',
            "fi",
        ]
    lines.append('exit "$status"')
    return lines


def _output_dir(script: str) -> str | None:
    match = re.search(r"^#SBATCH --output=(.*)$", script, re.MULTILINE)
    return os.path.dirname(match.group(1)) if match else None


def submit(
    script: str,
    dry_run: bool,
    script_path: str,
    print_fn: Callable[[str], None] = print,
    dependency: str | None = None,
) -> str | None:
    """Writes `script` to `script_path` and submits it; returns the job id.

    With `dry_run`, prints the script and the sbatch command instead and returns None.
    `dependency`: a job id this job starts after (however that one ends). The log
    directory is made first (SLURM does not make it, and drops the output otherwise).
    """
    command = ["sbatch", "--parsable"]
    if dependency:
        command.append(f"--dependency=afterany:{dependency}")
    command.append(script_path)
    if dry_run:
        print_fn(script.rstrip("\n"))
        print_fn(shlex.join(command))
        return None
    if shutil.which("sbatch") is None:
        raise ConfigError(SBATCH_MISSING)
    for directory in (os.path.dirname(script_path), _output_dir(script)):
        if directory:
            os.makedirs(directory, exist_ok=True)
    with open(script_path, "w") as f:
        f.write(script)
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode:
        reason = next((line for line in result.stderr.splitlines() if line.strip()), "")
        raise RunError(
            f"{shlex.join(command)} failed with exit status {result.returncode}"
            + (f": {reason.strip()}" if reason else "")
        )
    return result.stdout.strip().split(";")[0]
