"""The supervisor of a multi-host process (`framework.launchers.multihost`), against fake
children that end as XLA ends a process whose peer was lost; the real 2-process run with
a killed peer is in test_train_cli.py."""

import io
import os
import signal
import sys
import textwrap
import threading

from framework.launchers import multihost

# What XLA prints when the coordination service has given up on a peer, as the JAX of
# this project prints it (the stack dump shortened).
PEER_LOST = """\
E1203 17:58:09.913541   29607 coordination_service.cc:1549] Use error polling to propagate the following error to all tasks: UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):
1
The tasks have crashed. Check the task logs for an earlier error.
F1203 17:58:09.914165   29618 client.h:80] Terminating process because the JAX distributed service detected fatal errors. absl::Status: UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):
1
*** Check failure stack trace: ***
    @     0x7fdc66240634  absl::lts_20260107::log_internal::LogMessage::SendToLog()
"""  # noqa: E501
COORDINATOR_LOST = """\
F1203 17:58:17.170311   29966 client.h:80] Terminating process because the JAX distributed service detected fatal errors. absl::Status: UNAVAILABLE: Failed to send RPC to coordination service. Either the leader task was preempted/died/restarted unexpectedly.
*** Check failure stack trace: ***
"""  # noqa: E501
SHUTDOWN_BARRIER = (
    "Barrier result: 'INTERNAL: Barrier failed because: task is set to ERROR: UNAVAILABLE: "
    "Task 2 heartbeat timeout. This indicates that the remote task has failed"
)


def fake_child(tmp_path, body: str, process: int | None = None) -> list[str]:
    """A child process that runs `body` (with `mark(dict)` and `sys` at hand), having
    announced itself as `process` of 2 on host h<process>, as `multihost.announce` does."""
    script = tmp_path / "child.py"
    announce = (
        f"mark({{'process': {process}, 'count': 2, 'hosts': {{'0': 'h0', '1': 'h1'}}}})\n"
        if process is not None
        else ""
    )
    script.write_text(
        "import json, os, signal, sys, time\n"
        f"def mark(d): print({multihost._MARK!r} + json.dumps(d), file=sys.stderr, flush=True)\n"
        + announce
        + textwrap.dedent(body)
    )
    return [sys.executable, str(script)]


def workdir_with_checkpoints(tmp_path):
    workdir = tmp_path / "w"
    for name in ("10", "20", "30.orbax-checkpoint-tmp-17"):  # 30: an unfinished save
        (workdir / "checkpoints" / name).mkdir(parents=True)
    return workdir


def test_lost_processes_from_the_runtime_messages():
    assert multihost.lost_processes(PEER_LOST) == ([1], False)
    assert multihost.lost_processes(COORDINATOR_LOST) == ([0], True)
    assert multihost.lost_processes(SHUTDOWN_BARRIER) == ([2], False)
    assert multihost.lost_processes("F1203 client.h:80] something else") == ([], False)


def test_a_lost_peer_ends_in_one_line_and_status_3(tmp_path):
    workdir = workdir_with_checkpoints(tmp_path)
    command = fake_child(
        tmp_path,
        f"""
        print("a warning before", file=sys.stderr, flush=True)
        sys.stderr.write({PEER_LOST!r}); sys.stderr.flush()
        os.abort()
        """,
        process=0,
    )
    stderr = io.StringIO()
    status = multihost.supervise(command, str(workdir), timeout=7, stderr=stderr)
    assert status == multihost.LOST_PROCESS_EXIT == 3
    lines = stderr.getvalue().splitlines()
    log = workdir / "logs" / "process_0.runtime.log"
    assert lines == [
        "a warning before",
        "error: lost process 1 of 2 (host h1): no heartbeat from it for 7 s "
        "(--lost_host_timeout); stopped process 0 here. The last complete checkpoint "
        f"(step 20 in {workdir}/checkpoints) is intact: rerun the same command on every "
        f"host to resume from it. (runtime messages: {log})",
    ]
    assert "Check failure stack trace" in log.read_text()


def test_a_lost_coordinator_and_a_killed_process_are_named(tmp_path):
    command = fake_child(
        tmp_path, f"sys.stderr.write({COORDINATOR_LOST!r})\nos.abort()\n", process=1
    )
    stderr = io.StringIO()
    assert multihost.supervise(command, str(tmp_path / "w"), 7, stderr) == 3
    assert stderr.getvalue().startswith(
        "error: lost process 0 of 2 (host h0, the coordinator): its coordination service "
        "stopped answering; stopped process 1 here. No checkpoint was complete yet: a "
        "rerun starts from step 0."
    )

    killed = fake_child(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)\n", process=1)
    stderr = io.StringIO()
    assert multihost.supervise(killed, None, 7, stderr) == 128 + 9
    assert stderr.getvalue().startswith(
        "error: process 1 of 2 (host h1) was killed by SIGKILL (kill -9, or the "
        "out-of-memory killer); the other processes stop within --lost_host_timeout=7 s."
    )


def test_an_error_that_is_no_lost_peer_is_shown_as_it_was(tmp_path):
    command = fake_child(
        tmp_path,
        """
        mark({"peer_error": True})
        print("Traceback (most recent call last):\\nValueError: UNAVAILABLE", file=sys.stderr)
        sys.exit(1)
        """,
        process=0,
    )
    stderr = io.StringIO()
    assert multihost.supervise(command, str(tmp_path / "w"), 7, stderr) == 1
    assert stderr.getvalue() == "Traceback (most recent call last):\nValueError: UNAVAILABLE\n"
    finished = fake_child(tmp_path, "print('fine', file=sys.stderr)\n")
    stderr = io.StringIO()
    assert multihost.supervise(finished, None, 7, stderr) == 0
    assert stderr.getvalue() == "fine\n"


def test_sigterm_to_the_supervisor_reaches_the_child(tmp_path):
    ready = tmp_path / "ready"
    command = fake_child(
        tmp_path,
        f"""
        def stop(signum, frame):
            print("child got SIGTERM", file=sys.stderr, flush=True)
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        open({str(ready)!r}, "w").close()
        time.sleep(30)
        sys.exit(5)
        """,
    )

    def terminate_when_ready():
        for _ in range(300):
            if ready.exists():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            threading.Event().wait(0.05)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate_when_ready, daemon=True).start()
    stderr = io.StringIO()
    assert multihost.supervise(command, None, 7, stderr) == 0
    assert stderr.getvalue() == "child got SIGTERM\n"
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_sigterm_to_the_child_and_its_supervisor_is_one_stop(capsys):
    """`stop`, SLURM and a host's shutdown signal every process, so a supervised trainer
    gets its SIGTERM twice (once passed on): it says so once."""
    from framework.train import preemption

    with preemption.SigtermFlag() as flag:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
    assert flag.received
    assert capsys.readouterr().out.count("SIGTERM received") == 1
