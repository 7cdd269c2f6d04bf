"""Running training jobs as local processes, N at a time, each with its own devices.

A `Job` is one `launch.train` command a user could run by hand with its workdir: a sweep
point (`sweeps.jobs`) or a table run (`tables.jobs`). `run_local` starts the unfinished
ones, N at a time (on a GPU host with disjoint GPUs per process, `device_groups`), shows
progress with an ETA, records a failure in the job's run record (`run.json`) and passes
SIGINT / SIGTERM on to the running jobs (they checkpoint; a rerun resumes them).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Callable

from etils import epath

from framework import host_env
from framework.errors import ConfigError
from framework.train import metric_writing, run_record
from framework.train import workdir as workdir_lib

DONE, FAILED, STOPPED = run_record.DONE, run_record.FAILED, run_record.STOPPED


@dataclasses.dataclass(frozen=True)
class Job:
    """One training process: its command line, workdir and length (to tell if it is done)."""

    name: str  # shown in progress lines: a sweep point's slug, a table run's directory
    index: int  # 1-based, in the order of the jobs
    workdir: str
    command: tuple[str, ...]
    num_train_steps: int


def _gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def device_groups(parallel: int) -> list[dict[str, str]]:
    """The environment of each of `parallel` slots: on a GPU host, disjoint GPUs."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    gpus = _gpu_ids()
    if gpus:
        if parallel > len(gpus):
            raise ConfigError(
                f"--parallel={parallel} but this host has {len(gpus)} GPU(s), and each "
                "point needs its own; use --parallel of at most that"
            )
        per = len(gpus) // parallel
        return [
            {"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * per : (i + 1) * per])}
            for i in range(parallel)
        ]
    if parallel > 1 and host_env.on_tpu_host():
        raise ConfigError(
            f"--parallel={parallel}: a TPU host's chips serve one process at a time; "
            "use --parallel=1"
        )
    return [{} for _ in range(parallel)]


def _error_line(log_text: str) -> str:
    """The line that says why a run failed: its `error: ...` line, else its last line."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return lines[-1] if lines else "(no output)"


@dataclasses.dataclass
class _Running:
    point: Job
    process: subprocess.Popen
    slot: int
    log_path: str  # where the output goes while it runs (local)
    started: float


class _Stop(Exception):
    pass


def run_local(
    jobs: list[Job],
    parallel: int = 1,
    log_name: str = "run.log",
    poll_seconds: float = 0.5,
    log: Callable[[str], None] = metric_writing.log,
    what: str = "sweep",
) -> dict[str, int]:
    """Runs every unfinished job, `parallel` at a time; a failure does not stop the rest.

    Each job's output goes to `<workdir>/<log_name>` (`{host}` in it becomes the host
    name; a remote workdir gets the file when the job ends). SIGINT / SIGTERM stop them:
    the running jobs get SIGTERM (the trainer checkpoints and exits) and are marked
    stopped; a rerun resumes them. Returns how many jobs ended in each status.
    """
    slots = device_groups(parallel)
    todo = [j for j in jobs if run_record.read(j.workdir, j.num_train_steps)["status"] != DONE]
    log(
        f"{what}: {len(jobs)} run(s), {len(jobs) - len(todo)} finished before, {len(todo)} to "
        f"run, {parallel} at a time"
    )
    pending = collections.deque(todo)
    running: list[_Running] = []
    free = list(range(parallel))
    durations: list[float] = []
    counts = collections.Counter()
    log_name = log_name.replace("{host}", os.uname().nodename)
    scratch = tempfile.mkdtemp(prefix="run_logs_")

    def stop_handler(signum, frame):
        raise _Stop()

    previous = {s: signal.signal(s, stop_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while pending or running:
            while pending and free:
                running.append(_start(pending.popleft(), free.pop(0), slots, scratch, log_name))
                log(f"[{running[-1].point.index}/{len(jobs)}] started {running[-1].point.name}")
            time.sleep(poll_seconds)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                free.append(job.slot)
                seconds = time.perf_counter() - job.started
                durations.append(seconds)
                status, error = _finish(job, log_name, seconds)
                counts[status] += 1
                remaining = len(pending) + len(running)
                eta = ""
                if remaining:
                    mean = sum(durations) / len(durations)
                    eta = f", ETA {metric_writing.format_duration(mean * remaining / parallel)}"
                what = f": {error}" if error else ""
                log(
                    f"[{job.point.index}/{len(jobs)}] {status} {job.point.name} in "
                    f"{metric_writing.format_duration(seconds)}{what} ({remaining} left{eta})"
                )
    except _Stop:
        log(f"{what}: stopping {len(running)} running job(s) (SIGTERM; they checkpoint)")
        for job in running:
            job.process.send_signal(signal.SIGTERM)
        for job in running:
            try:
                job.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
            _finish(job, log_name, time.perf_counter() - job.started, stopped=True)
        raise KeyboardInterrupt from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"{what}: ran {len(todo)} run(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return dict(counts)


def _start(
    point: Job, slot: int, slots: list[dict[str, str]], scratch: str, log_name: str
) -> _Running:
    if workdir_lib.is_remote(point.workdir):
        log_path = os.path.join(scratch, f"{point.index}.log")
    else:
        os.makedirs(point.workdir, exist_ok=True)
        log_path = os.path.join(point.workdir, log_name)
    env = {**os.environ, **slots[slot], "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as out:
        process = subprocess.Popen(
            list(point.command),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches the sweep, which passes on SIGTERM
        )
    return _Running(point, process, slot, log_path, time.perf_counter())


def _finish(job: _Running, log_name: str, seconds: float, stopped: bool = False) -> tuple[str, str]:
    with open(job.log_path, errors="replace") as f:
        text = f.read()
    if workdir_lib.is_remote(job.point.workdir):
        target = epath.Path(job.point.workdir)
        target.mkdir(parents=True, exist_ok=True)
        (target / log_name).write_text(text)
    record = run_record.read(job.point.workdir, job.point.num_train_steps)
    if record["status"] == DONE:
        return DONE, ""
    if stopped:
        status, error = STOPPED, "stopped with the others; a rerun resumes it"
    else:
        code = job.process.returncode
        status, error = FAILED, _error_line(text) + f" (exit status {code})"
    # The run's own record (if it wrote one) with why it ended, as the runner saw it.
    record.update(status=status, error=error, wall_seconds=round(seconds, 1))
    run_record.write(job.point.workdir, record)
    return status, error
