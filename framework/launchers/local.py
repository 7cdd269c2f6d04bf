"""Running training jobs as local processes, N at a time, each with its own devices.

A `Job` is one `launch.train` command a user could run by hand with its workdir: a sweep
point (`sweeps.jobs`) or a table run (`tables.jobs`). `run_local` starts the unfinished
ones, N at a time (on a GPU host with disjoint GPUs per process, `device_groups`), shows
progress with an ETA, records a failure in the job's run record (`run.json`) and passes
SIGINT / SIGTERM on to the running jobs (they checkpoint; a rerun resumes them).

A job whose workdir is held by a live run that this runner did not start (its earlier
runner was killed, or another one is at work) is not started again: it is reported as
`running (pid P on host H)` (`framework.train.workdir.holder`) and counted `running`.
With `wait` the runner waits for that run to end (it takes one of the `parallel` slots
meanwhile) and reports the status its run record then gives; without, it leaves it.
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

from absl import flags
from etils import epath

from framework import host_env
from framework.errors import ConfigError, RunError
from framework.train import metric_writing, run_record
from framework.train import workdir as workdir_lib

DONE, FAILED, STOPPED = run_record.DONE, run_record.FAILED, run_record.STOPPED
RUNNING = "running"  # held by a live run this runner did not start

WAIT_FLAG = "wait"
if WAIT_FLAG not in flags.FLAGS:  # for launch.sweep and launch.reproduce, which import this
    flags.DEFINE_bool(
        WAIT_FLAG,
        False,
        "Local runs: wait for a run whose workdir a live process of an earlier invocation "
        "holds, then report how it ended; without it such runs are left to themselves and "
        "reported as running.",
    )


def wait_flag() -> bool:
    """`--wait` when flags are parsed (a launch command), else False."""
    return flags.FLAGS.is_parsed() and bool(flags.FLAGS[WAIT_FLAG].value)


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


@dataclasses.dataclass
class _Held:
    """A job whose workdir a live run of another process holds, waited for in a slot."""

    point: Job
    holder: workdir_lib.Holder
    slot: int


class _Stop(Exception):
    pass


def _held_line(point: Job, total: int, holder: workdir_lib.Holder, wait: bool) -> str:
    then = "waiting for it" if wait else "left to it (--wait waits for it)"
    return (
        f"[{point.index}/{total}] running {point.name} ({holder.describe()}): "
        f"not started again, {then}"
    )


def _held_result(held: _Held) -> tuple[str, str]:
    """The status and error line of a held job's run, read once it has released its lock."""
    record = run_record.read(held.point.workdir, held.point.num_train_steps)
    status, error = record["status"], record.get("error", "")
    if status not in (DONE, STOPPED, FAILED):  # killed, or its host lost: no record
        error = "it ended without a run record (killed?); a rerun resumes it"
    return status, error


def run_local(
    jobs: list[Job],
    parallel: int = 1,
    log_name: str = "run.log",
    poll_seconds: float = 0.5,
    log: Callable[[str], None] = metric_writing.log,
    what: str = "sweep",
    wait: bool = False,
) -> dict[str, int]:
    """Runs every unfinished job, `parallel` at a time; a failure does not stop the rest.

    Each job's output goes to `<workdir>/<log_name>` (`{host}` in it becomes the host
    name; a remote workdir gets the file when the job ends). SIGINT / SIGTERM stop them:
    the running jobs get SIGTERM (the trainer checkpoints and exits) and are marked
    stopped; a rerun resumes them. A job whose workdir a live run of another process
    holds is not started: with `wait` the runner waits for that run and counts the status
    it ends with, without it counts the job `running`. Returns how many jobs ended in
    each status.
    """
    slots = device_groups(parallel)
    todo = [j for j in jobs if run_record.read(j.workdir, j.num_train_steps)["status"] != DONE]
    log(
        f"{what}: {len(jobs)} run(s), {len(jobs) - len(todo)} finished before, {len(todo)} to "
        f"run, {parallel} at a time"
    )
    pending = collections.deque(todo)
    running: list[_Running] = []
    held: list[_Held] = []
    free = list(range(parallel))
    durations: list[float] = []
    counts = collections.Counter()
    log_name = log_name.replace("{host}", os.uname().nodename)
    scratch = tempfile.mkdtemp(prefix="run_logs_")

    def stop_handler(signum, frame):
        raise _Stop()

    previous = {s: signal.signal(s, stop_handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def hold(point: Job, holder: workdir_lib.Holder, slot: int) -> None:
        """A job another process's run holds: wait for it in `slot`, or leave it."""
        log(_held_line(point, len(jobs), holder, wait))
        if wait:
            held.append(_Held(point, holder, slot))
        else:
            counts[RUNNING] += 1
            free.append(slot)

    try:
        while pending or running or held:
            while pending and free:
                point, slot = pending.popleft(), free.pop(0)
                holder = workdir_lib.holder(point.workdir)
                if holder is not None:
                    hold(point, holder, slot)
                    continue
                running.append(_start(point, slot, slots, scratch, log_name))
                log(f"[{point.index}/{len(jobs)}] started {point.name}")
            if running or held:
                time.sleep(poll_seconds)
            for job in [h for h in held if workdir_lib.holder(h.point.workdir) is None]:
                held.remove(job)
                free.append(job.slot)
                status, error = _held_result(job)
                counts[status] += 1
                remaining = len(pending) + len(running) + len(held)
                log(
                    f"[{job.point.index}/{len(jobs)}] {status} {job.point.name}, run by "
                    f"{job.holder.describe()}"
                    + (f": {error}" if error else "")
                    + f" ({remaining} left)"
                )
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                seconds = time.perf_counter() - job.started
                holder = _lost_race(job)
                if holder is not None:  # another process's run took the workdir first
                    hold(job.point, holder, job.slot)
                    continue
                free.append(job.slot)
                durations.append(seconds)
                status, error = _finish(job, log_name, seconds)
                counts[status] += 1
                remaining = len(pending) + len(running) + len(held)
                eta = ""
                if remaining:
                    mean = sum(durations) / len(durations)
                    eta = f", ETA {metric_writing.format_duration(mean * remaining / parallel)}"
                detail = f": {error}" if error else ""
                log(
                    f"[{job.point.index}/{len(jobs)}] {status} {job.point.name} in "
                    f"{metric_writing.format_duration(seconds)}{detail} ({remaining} left{eta})"
                )
    except _Stop:
        log(f"{what}: stopping {len(running)} running job(s) (SIGTERM; they checkpoint)")
        if held:
            log(f"{what}: {len(held)} run(s) of other processes are left running")
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
    named = {RUNNING: "still running in other processes"}
    log(
        f"{what}: ran {len(todo)} run(s): "
        + ", ".join(f"{n} {named.get(s, s)}" for s, n in counts.items())
    )
    return dict(counts)


def check_all_done(counts: dict[str, int], workdir: str) -> None:
    """Raises a one-line RunError unless every job of `run_local`'s `counts` is done (a
    table needs them all): how many did not finish, and how many still run elsewhere."""
    running = counts.get(RUNNING, 0)
    unfinished = sum(n for status, n in counts.items() if status not in (DONE, RUNNING))
    still = (
        f"{running} run(s) still running in other processes (see above): rerun when they "
        "end, or with --wait, to make the table"
    )
    if unfinished:
        raise RunError(
            f"{unfinished} run(s) did not finish (see their run.log in {workdir}); rerun to "
            "resume them" + (f"; {still}" if running else "")
        )
    if running:
        raise RunError(still)


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


def _lost_race(job: _Running) -> workdir_lib.Holder | None:
    """The live run of another process that took a job's workdir between the check and
    the start, if the job failed on that (its error line says the workdir is in use)."""
    if job.process.returncode == 0:
        return None
    with open(job.log_path, errors="replace") as f:
        if " is in use by " not in _error_line(f.read()):
            return None
    return workdir_lib.holder(job.point.workdir)


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
