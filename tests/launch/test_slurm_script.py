"""The sbatch script's signal handling, run with bash against fake srun / scancel / scontrol.

SLURM's USR1 before the time limit reaches the batch shell only; the script must pass
SIGTERM on to the run, wait for its checkpoint, and requeue the job if the run stopped
unfinished. TERM (scancel, preemption) is passed on too, without a requeue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from framework.launchers import slurm

# srun runs the command in place (options dropped) and records its pid for scancel.
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
echo $$ > "$FAKE/task.pid"
exec "$@"
"""
FAKE_SCANCEL = """#!/bin/bash
echo "scancel $*" >> "$FAKE/calls"
kill -TERM "$(cat "$FAKE/task.pid")"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$FAKE/calls"
"""
# The run: on SIGTERM it takes a moment to "save", writes its record and exits 0, as the
# trainer does; $2 is the status it records.
TASK = """#!/bin/bash
save() { sleep 0.3; echo "{\\"status\\": \\"$2\\"}" > "$1/run.json"; echo saved >> "$FAKE/calls"; }
trap 'save "$@"; exit 0' TERM
echo started >> "$FAKE/calls"
while :; do sleep 0.05; done
"""


def _write(path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def _run_script(tmp_path, send: signal.Signals, recorded: str) -> tuple[int, list[str], str]:
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scancel", FAKE_SCANCEL)):
        _write(fake / name, text)
    _write(fake / "scontrol", FAKE_SCONTROL)
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "activate").write_text("")
    workdir = tmp_path / "run"
    workdir.mkdir()
    task = _write(tmp_path / "task.sh", TASK)
    job = slurm.SlurmJob(job_name="t", log_dir=str(tmp_path / "logs"), venv="venv")
    command = f"bash {task} {workdir} {recorded}"
    script = tmp_path / "t.sbatch"
    script.write_text(slurm.sbatch_script(job, [command], str(tmp_path), workdirs=[str(workdir)]))
    calls = tmp_path / "calls"
    env = {
        **os.environ,
        "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
        "FAKE": str(tmp_path),
        "SLURM_JOB_ID": "77",
    }
    process = subprocess.Popen(
        ["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 20
    while not (calls.exists() and "started" in calls.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, process.stdout.read()
        time.sleep(0.02)
    process.send_signal(send)
    output, _ = process.communicate(timeout=20)
    return process.returncode, calls.read_text().splitlines(), output


@pytest.mark.parametrize(
    "send, recorded, requeued",
    [
        (signal.SIGUSR1, "stopped", True),  # the time limit, the run unfinished: requeue
        (signal.SIGUSR1, "done", False),  # the time limit as the run finished: no requeue
        (signal.SIGTERM, "stopped", False),  # scancel / preemption: SLURM decides
    ],
)
def test_a_stop_reaches_the_run_which_saves_then_a_time_limit_stop_requeues(
    tmp_path, send, recorded, requeued
):
    status, calls, output = _run_script(tmp_path, send, recorded)
    assert status == 0, output
    expected = ["started", "scancel --signal=TERM 77", "saved"]
    assert calls == expected + (["scontrol requeue 77"] if requeued else []), output
    if requeued:
        assert "== requeueing job 77: the run resumes from its checkpoint" in output


def test_the_scripts_finished_check_reads_the_run_record_as_written(tmp_path):
    """The script greps run.json for `"status": "done"`: the form `run_record.write` has."""
    from framework.train import run_record

    run_record.write(str(tmp_path), run_record.make(run_record.DONE, step=4, num_train_steps=4))
    assert '"status": "done"' in (tmp_path / run_record.RECORD_FILE).read_text()
    assert '! grep -qs \'"status": "done"\' "$workdir/run.json"' in slurm.sbatch_script(
        slurm.SlurmJob(job_name="j", log_dir="/l"), ["x"], "/r", workdirs=[str(tmp_path)]
    )
