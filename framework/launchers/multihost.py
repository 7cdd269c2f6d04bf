"""A lost process of a multi-host run: every other process stops in bounded time and
says, in one line, which process was lost and what to do.

What JAX does on its own: the coordination service (run by process 0 from
`jax.distributed.initialize`) hears a heartbeat from every process. When one stops
answering for the heartbeat timeout (`--lost_host_timeout`; killed, out of memory, its
host gone), the service tells the others and XLA aborts each of them from a C++ thread
(exit status 134, with a screen of runtime messages and a stack dump); when the lost
process is process 0, the others abort as soon as its service stops answering. A
collective with the lost peer may fail first, as a Python `JaxRuntimeError` (on CPU,
Gloo's "Connection reset by peer"). The callback that XLA would call instead of
aborting cannot be set from Python in this JAX (its argument does not convert), so the
one line comes from outside the process:

- `supervise` (called by `framework.app.initialize_distributed`) starts the same command
  again as a child process (`SUPERVISED_ENV` set) and waits for it. The child's stdout
  passes straight through and so does its stderr, until the runtime reports a peer
  failure; from then on the runtime's messages go to `runtime_log_path` instead of the
  terminal. When the child ends, the supervisor prints one line (`describe_end`) and
  exits with `LOST_PROCESS_EXIT` when a peer was lost.
- In the child, `announce` tells the supervisor its process index, the process count
  and every process's host (through the coordination service's key-value store), and
  `await_verdict` makes a Python-visible collective failure wait for the service's
  verdict instead of exiting at once (process 0's exit would take the service down and
  make the others blame process 0).

Checkpoints are unaffected: a checkpoint step is complete only once Orbax has committed
it, so the last complete one is intact and a rerun (which removes uncommitted
temporaries) resumes from it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from typing import IO, Sequence

SUPERVISED_ENV = "FRAMEWORK_SUPERVISED"  # set in the child; "1": already supervised
_PARENT_PID_ENV = "FRAMEWORK_SUPERVISOR_PID"
LOST_PROCESS_EXIT = 3  # a peer process was lost; a rerun resumes
DEFAULT_TIMEOUT = 60  # seconds without a heartbeat before a process counts as lost
_MARK = "@@framework-multihost "  # lines from the child to its supervisor, not shown
_HOST_KEY = "framework/host/"
# The runtime's messages when a peer fails: glog lines of the coordination service and
# XLA's termination notice (the test environment hides E lines, never F lines).
_RUNTIME_FAILURE = re.compile(
    r"^[EF]\d{4} .*(coordination_service|coordination service|client\.h:\d+\])"
    r"|Terminating process because the JAX distributed service"
)
_UNHEALTHY = re.compile(r"stopped sending heartbeats\):[ \t]*\n((?:[ \t]*[\w/:]*\d+,?[ \t]*\n)+)")
_UNHEALTHY_ID = re.compile(r"^\s*(?:/job:\w+/replica:\d+/task:)?(\d+)\s*,?\s*$")
_HEARTBEAT_TIMEOUT = re.compile(r"[Tt]ask:? ?(\d+) heartbeat timeout")
# A collective or barrier that failed because a peer went away (the error's type varies:
# JaxRuntimeError, or a ValueError from multihost_utils on CPU).
_PEER_ERROR = re.compile(
    r"Gloo|Connection reset by peer|Connection refused|coordination service|heartbeat|"
    r"UNAVAILABLE|DEADLINE_EXCEEDED|[Bb]arrier"
)
_COORDINATOR_GONE = (
    "Failed to send RPC to coordination service",
    "leader task was preempted",
)


# ---------------------------------------------------------------- in the supervisor


def is_supervised() -> bool:
    """Whether this process needs no supervisor: it is the child of one, or the user set
    `SUPERVISED_ENV=1` to run without."""
    return os.environ.get(SUPERVISED_ENV) == "1"


_supervisor_pid: int | None = None  # set by `adopt` in a supervised child


def has_supervisor() -> bool:
    """Whether this process is the child of a supervisor (which reads its marks)."""
    return _supervisor_pid is not None


@dataclasses.dataclass
class _Child:
    """What the supervisor learns from its child's stderr."""

    process: int | None = None
    count: int | None = None
    hosts: dict[int, str] = dataclasses.field(default_factory=dict)
    quiet: bool = False  # a failure began: the messages from then on are held
    runtime_failure: bool = False  # XLA's runtime reported it (not only Python)
    held: list[str] = dataclasses.field(default_factory=list)  # for the runtime log


def runtime_log_path(workdir: str | None, process: int | None) -> str:
    """Where the runtime's messages go once a peer has failed: `WORKDIR/logs/` for a
    local workdir, else the temporary directory."""
    name = f"process_{'x' if process is None else process}.runtime.log"
    if workdir and "://" not in workdir:
        return os.path.join(workdir, "logs", name)
    return os.path.join(tempfile.gettempdir(), f"framework-{os.getpid()}-{name}")


def lost_processes(text: str) -> tuple[list[int], bool]:
    """(the lost processes, whether the lost one is the coordinator) from the runtime's
    messages; ([], False) when they name none."""
    found = _UNHEALTHY.search(text)
    if found:
        ids = [_UNHEALTHY_ID.match(line) for line in found.group(1).splitlines()]
        ids = [int(m.group(1)) for m in ids if m]
        if ids:
            return sorted(set(ids)), False
    ids = sorted({int(i) for i in _HEARTBEAT_TIMEOUT.findall(text)})
    if ids:
        return ids, False
    if any(marker in text for marker in _COORDINATOR_GONE):
        return [0], True
    return [], False


def last_checkpoint(workdir: str | None) -> str:
    """What a rerun resumes from, as a sentence: the newest committed step of
    `WORKDIR/checkpoints` (a step directory Orbax has renamed into place, and for a
    remote workdir one with its commit file)."""
    if not workdir:
        return "Rerun the same command on every host to resume from the last checkpoint."
    directory = os.path.join(workdir, "checkpoints")
    try:
        from etils import epath

        path = epath.Path(directory)
        names = [p.name for p in path.iterdir()] if path.is_dir() else []
        remote = "://" in workdir
        steps = sorted(
            int(name)
            for name in names
            if name.isdigit() and (not remote or (path / name / "commit_success.txt").exists())
        )
    except Exception:  # a remote file system's own errors: say it without the step
        return (
            f"The last complete checkpoint in {directory} is intact: rerun the same command "
            "on every host to resume from it."
        )
    if not steps:
        return "No checkpoint was complete yet: a rerun starts from step 0."
    return (
        f"The last complete checkpoint (step {steps[-1]} in {directory}) is intact: rerun "
        "the same command on every host to resume from it."
    )


def _process_name(child: _Child, index: int | None, coordinator: bool = False) -> str:
    if index is None:
        return "this process"
    host = child.hosts.get(index)
    details = ([f"host {host}"] if host else []) + (["the coordinator"] if coordinator else [])
    of = f" of {child.count}" if child.count else ""
    return f"process {index}{of}" + (f" ({', '.join(details)})" if details else "")


def describe_end(
    child: _Child,
    returncode: int,
    workdir: str | None,
    timeout: int,
    log_path: str | None,
) -> tuple[str | None, int]:
    """(the one line for the operator or None, the exit status) once the child ended."""
    if returncode == 0:
        return None, 0
    text = "".join(child.held)
    lost, coordinator = lost_processes(text)
    here = "" if child.process is None else f" {child.process}"
    messages = f" (runtime messages: {log_path})" if log_path else ""
    resume = last_checkpoint(workdir)
    status = 128 - returncode if returncode < 0 else returncode
    if lost and lost != [child.process]:
        others = [i for i in lost if i != child.process]
        names = ", ".join(_process_name(child, i, coordinator) for i in others)
        why = (
            "its coordination service stopped answering"
            if coordinator
            else f"no heartbeat from {'it' if len(others) == 1 else 'them'} for {timeout} s "
            "(--lost_host_timeout)"
        )
        line = f"lost {names}: {why}; stopped process{here} here. {resume}{messages}"
        return line, LOST_PROCESS_EXIT
    if child.runtime_failure:
        first = next((s for s in text.splitlines() if "absl::Status:" in s), "")
        reason = (
            first.split("absl::Status:", 1)[1].strip().rstrip(".") if first else "a runtime failure"
        )
        line = (
            f"the JAX distributed runtime stopped process{here}: {reason[:200]}. {resume}{messages}"
        )
        return line, status
    if returncode < 0 and child.count and child.count > 1:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        cause = " (kill -9, or the out-of-memory killer)" if number == signal.SIGKILL else ""
        line = (
            f"{_process_name(child, child.process)} was killed by {name}{cause}; the other "
            f"processes stop within --lost_host_timeout={timeout} s. {resume}"
        )
        return line, status
    return None, status


def _write(stream: IO[str], text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (BrokenPipeError, ValueError):  # the terminal went away: the run still ends
        pass


def _read_mark(payload: str, child: _Child) -> None:
    try:
        data = json.loads(payload)
    except ValueError:
        return
    if "process" in data:
        child.process, child.count = int(data["process"]), int(data["count"])
        child.hosts = {int(k): str(v) for k, v in data.get("hosts", {}).items()}
    if data.get("peer_error"):
        child.quiet = True


def pump(source: IO[bytes], child: _Child, stderr: IO[str]) -> None:
    """Copies the child's stderr to `stderr` until the runtime reports a failure; holds
    the rest (`child.held`) for the runtime log. Reads the child's marks."""
    for raw in iter(source.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(_MARK):
            _read_mark(line[len(_MARK) :], child)
            continue
        if not child.runtime_failure and _RUNTIME_FAILURE.search(line):
            child.quiet = child.runtime_failure = True
        if child.quiet:
            child.held.append(line)
        else:
            _write(stderr, line)


def _save(lines: list[str], path: str) -> str | None:
    """Appends the held runtime messages to `path`; returns it, or None if it cannot."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
        return path
    except OSError:
        return None


def supervise(
    command: Sequence[str],
    workdir: str | None,
    timeout: int,
    stderr: IO[str] | None = None,
) -> int:
    """Runs `command` (this command again) as a supervised child; returns the exit status
    to end with, having printed one `error: ...` line if the child ended on a failure.

    A SIGTERM to the supervisor is passed on to the child; a Ctrl-C reaches the child
    from the terminal, so the supervisor ignores its own.
    """
    stderr = stderr or sys.stderr
    env = {**os.environ, SUPERVISED_ENV: "1", _PARENT_PID_ENV: str(os.getpid())}
    started: list[subprocess.Popen] = []

    def forward(signum, frame):
        for proc in started:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass

    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, forward),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
    }
    child = _Child()
    try:
        started.append(subprocess.Popen(list(command), env=env, stderr=subprocess.PIPE))
        pump(started[0].stderr, child, stderr)
        returncode = started[0].wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log_path = None
    if child.held:
        log_path = _save(child.held, runtime_log_path(workdir, child.process))
    line, status = describe_end(child, returncode, workdir, timeout, log_path)
    if line is None:
        _write(stderr, "".join(child.held))  # not a lost peer: the messages are the error
    else:
        _write(stderr, f"error: {line}\n")
    return status


# ---------------------------------------------------------------- in the child


def adopt() -> None:
    """In a supervised child: notes the supervisor (and takes its variables out of the
    environment, so that processes this one starts are not taken for its copies), and
    has the kernel send SIGTERM to this process if the supervisor dies (Linux), so that
    a killed supervisor leaves no orphan training on: it checkpoints and exits."""
    global _supervisor_pid
    parent = os.environ.pop(_PARENT_PID_ENV, None)
    if not parent or not is_supervised():  # SUPERVISED_ENV set by hand: no supervisor
        return
    os.environ.pop(SUPERVISED_ENV)
    _supervisor_pid = int(parent)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != _supervisor_pid:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _mark(data: dict) -> None:
    print(_MARK + json.dumps(data), file=sys.stderr, flush=True)


def announce(timeout: int) -> None:
    """Tells the supervisor this process's index, the process count and every process's
    host, which each process publishes in the coordination service's key-value store."""
    import jax

    if not has_supervisor():
        return
    hosts: dict[int, str] = {}
    try:
        from jax._src import distributed

        client = distributed.global_state.client
        client.key_value_set(f"{_HOST_KEY}{jax.process_index()}", socket.gethostname())
        client.wait_at_barrier("framework_hosts", timeout * 1000)
        for key, value in client.key_value_dir_get(_HOST_KEY):
            hosts[int(key.rstrip("/").rsplit("/", 1)[-1])] = value
    except Exception:  # a JAX without these internals: the line names no hosts
        hosts = {}
    _mark({"process": jax.process_index(), "count": jax.process_count(), "hosts": hosts})


def looks_like_lost_peer(error: BaseException | None) -> bool:
    """Whether `error` or one it arose from is a runtime error or names a failed
    collective, barrier or connection (what a lost peer causes)."""
    import jax

    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, jax.errors.JaxRuntimeError) or _PEER_ERROR.search(str(error)):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def await_verdict(error: BaseException, timeout: int) -> None:
    """For an error in a supervised multi-process child: if it came from a lost peer, the
    coordination service ends this process within `timeout` (and the supervisor names
    the peer); wait for that rather than exit first. Otherwise the error stands: after
    the wait, exit with status 1 (the supervisor shows the traceback)."""
    import jax

    if not (has_supervisor() and jax.distributed.is_initialized()) or jax.process_count() < 2:
        return
    if not looks_like_lost_peer(error):
        return
    _mark({"peer_error": True})
    traceback.print_exception(error, file=sys.stderr)
    sys.stderr.flush()
    time.sleep(timeout + 10)
    os._exit(1)  # no shutdown barrier: the peers see this process lost
