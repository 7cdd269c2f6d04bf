"""`launch.tpu_vm watch` / `run --watch` against a fake `gcloud` on the PATH that plays a
scripted sequence of VM states and records every call; and `run`'s wrapper, run here
with bash, noting how the command ended."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time

import pytest

from framework.errors import RunError
from framework.launchers import tpu_vm
from launch import tpu_vm as tpu_vm_cli
from tests.launch import cli

FINISHED = f"{tpu_vm.END_MARK} 0"

# `gcloud compute tpus tpu-vm ACTION ...`: describe prints the next line of `states`, the
# run-state ssh the next `LAST LOG LINE|running` pair of `ends` (the last line of each
# repeats); `INTERRUPT` sends this test Ctrl-C. A fake tar keeps `setup` off the checkout.
FAKE_GCLOUD = r"""#!/bin/bash
dir=$(dirname "$0")
printf '%s\n' "gcloud $*" >> "$dir/calls"
next() {  # the first line of file $1, removed unless it is the last
  head -n 1 "$dir/$1"
  if [ "$(wc -l < "$dir/$1")" -gt 1 ]; then sed -i 1d "$dir/$1"; fi
}
case "$4" in
  describe)
    state=$(next states)
    if [ "$state" = INTERRUPT ]; then kill -INT "$PPID"; sleep 1; fi
    echo "$state";;
  ssh)
    case "$*" in
      *"tail -n 1"*) next ends | tr '|' '\n';;
      *) echo "started on fake-host";;
    esac;;
esac
"""
FAKE_TAR = '#!/bin/bash\nprintf \'%s\\n\' "tar $*" >> "$(dirname "$0")/calls"\n'


@pytest.fixture
def fake_gcloud(tmp_path, monkeypatch):
    """The directory of the fake gcloud (and tar), first on the PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("gcloud", FAKE_GCLOUD), ("tar", FAKE_TAR)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def script(bin_dir, states: list[str], ends: list[str]) -> None:
    (bin_dir / "states").write_text("\n".join(states) + "\n")
    (bin_dir / "ends").write_text("\n".join(ends) + "\n")


def calls(bin_dir) -> list[str]:
    """Each recorded call in short: `describe`, `ssh:status|setup|run`, `create`, ..."""
    out = []
    for line in (bin_dir / "calls").read_text().splitlines():
        words = line.split()
        if words[0] == "tar":
            out.append("tar")
        elif words[4] != "ssh":
            out.append(words[4])
        else:
            kind = "status" if "tail -n 1" in line else "setup" if "pip install" in line else "run"
            out.append(f"ssh:{kind}")
    return out


def watch(capsys, *args: str, action: str = "watch") -> tuple[list[str], BaseException | None]:
    """Runs `python -m launch.tpu_vm ACTION` in-process; returns its log lines without
    their time stamps, and the exception it ended with (None if none)."""
    argv = [
        "tpu_vm",
        action,
        "--name=my-vm",
        "--zone=z",
        "--spot",
        "--watch_poll_secs=0",
        "--watch_backoff_secs=0.01",
        *args,
        "--",
        "python",
        "-m",
        "launch.train",
        "--workdir=gs://b/run",
    ]
    error = None
    try:
        with cli.parsed_flags(argv) as positional:
            tpu_vm_cli.main(positional)
    except (RunError, SystemExit) as e:
        error = e
    lines = capsys.readouterr().out.splitlines()
    return [line.split(" ", 2)[2] for line in lines], error


def test_watch_remakes_a_preempted_vm_and_stops_when_the_command_finished(fake_gcloud, capsys):
    script(
        fake_gcloud,
        ["READY", "PREEMPTED", "READY"],
        ["step 5/100|running", "step 50/100|running", f"{FINISHED}|not running"],
    )
    lines, error = watch(capsys)
    assert error is None
    assert calls(fake_gcloud) == [
        "describe",
        "ssh:status",
        "describe",
        "delete",
        "create",
        "tar",
        "scp",
        "ssh:setup",
        "ssh:run",
        "describe",
        "ssh:status",
        "describe",
        "ssh:status",
    ]
    assert lines == [
        "my-vm: READY, the command is running",
        "my-vm: it is PREEMPTED: restart 1 of 20 in 0.01 s (delete, create, setup, run)",
        "my-vm: restart 1 started the command again; watching",
        "my-vm: READY, the command is running",
        "my-vm: the command finished (exit status 0): stopped watching",
    ]
    created = (fake_gcloud / "calls").read_text().splitlines()[4]
    assert created.startswith("gcloud compute tpus tpu-vm create my-vm --zone=z")
    assert created.endswith(" --spot")  # the same flags as the VM it replaces


def test_watch_gives_up_after_its_restarts_with_backoff(fake_gcloud, capsys):
    script(fake_gcloud, ["PREEMPTED", "NOT_FOUND"], [])
    lines, error = watch(capsys, "--watch_max_restarts=2")
    assert isinstance(error, RunError) and str(error) == (
        "my-vm: it is NOT_FOUND, and the watch has restarted it 2 times "
        "(--watch_max_restarts): stopped watching. The workdir keeps its checkpoints: make "
        "the VM again (delete, create, setup, run) to resume"
    )
    # The second restart finds no VM to delete (NOT_FOUND), and waits twice as long.
    assert calls(fake_gcloud) == (
        ["describe", "delete", "create", "tar", "scp", "ssh:setup", "ssh:run"]
        + ["describe", "create", "tar", "scp", "ssh:setup", "ssh:run", "describe"]
    )
    assert lines == [
        "my-vm: it is PREEMPTED: restart 1 of 2 in 0.01 s (delete, create, setup, run)",
        "my-vm: restart 1 started the command again; watching",
        "my-vm: it is NOT_FOUND: restart 2 of 2 in 0.02 s (create, setup, run)",
        "my-vm: restart 2 started the command again; watching",
    ]


def test_a_finished_command_is_not_restarted(fake_gcloud, capsys):
    script(fake_gcloud, ["READY", "PREEMPTED"], [f"{FINISHED}|not running"])
    assert watch(capsys) == (
        ["my-vm: the command finished (exit status 0): stopped watching"],
        None,
    )
    assert calls(fake_gcloud) == ["describe", "ssh:status"]


def test_run_watch_reruns_after_a_lost_host_but_not_after_a_failure(fake_gcloud, capsys):
    script(
        fake_gcloud,
        ["READY"],
        [f"{tpu_vm.END_MARK} 3|not running", f"{tpu_vm.END_MARK} 1|not running"],
    )
    lines, error = watch(capsys, "--watch", action="run")
    assert isinstance(error, RunError) and str(error) == (
        "my-vm: the command ended with exit status 1 (see its log: python -m launch.tpu_vm "
        "logs): not restarted; stopped watching"
    )
    assert calls(fake_gcloud) == ["ssh:run", "describe", "ssh:status", "ssh:run"] + [
        "describe",
        "ssh:status",
    ]
    assert lines[:2] == [
        "my-vm: the command lost a host (exit status 3): restart 1 of 20 in 0.01 s (run)",
        "my-vm: restart 1 started the command again; watching",
    ]


def test_ctrl_c_stops_watching_and_leaves_the_run(fake_gcloud, capsys):
    script(fake_gcloud, ["READY", "INTERRUPT"], ["step 5/100|running"])
    lines, error = watch(capsys)
    assert isinstance(error, SystemExit) and error.code == 130
    assert lines[-1] == (
        "stopped watching my-vm; the run there goes on (python -m launch.tpu_vm status / "
        "logs / stop)"
    )
    assert calls(fake_gcloud) == ["describe", "ssh:status", "describe"]


def test_run_wrapper_notes_how_the_command_ended(tmp_path):
    vm = tpu_vm.TpuVm(name="v", zone="z")
    workdir, remote_dir = tmp_path / "w", tmp_path / "checkout"
    remote_dir.mkdir()
    log = workdir / "logs" / f"worker_{os.uname().nodename}.log"
    for command, end in (
        ("echo hello; exit 3", "exit status 3"),
        ("kill -TERM $PPID; sleep 0.2", "exit status 0, after SIGTERM"),
    ):
        ssh = tpu_vm.run(vm, ["sh", "-c", command], str(workdir), str(remote_dir))
        remote = ssh[-1].removeprefix("--command=")
        subprocess.run(["bash", "-c", remote], check=True, capture_output=True)
        deadline = time.monotonic() + 20
        while not (log.exists() and log.read_text().endswith(f"{end}\n")):
            assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
            time.sleep(0.05)
    assert log.read_text() == textwrap.dedent(
        f"""\
        hello
        {tpu_vm.END_MARK} 3
        {tpu_vm.END_MARK} 0, after SIGTERM
        """
    )
