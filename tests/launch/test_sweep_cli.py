"""`python -m launch.sweep` end to end on a tiny sweep with one failing point."""

import csv
import json
import os
import socket
import subprocess
import sys
import time

from etils import epath

from framework.config import loader
from framework.experiments import sweep_report, sweeps
from framework.launchers import local
from framework.train import run_record
from framework.train import workdir as workdir_lib
from tests import remote_fs
from tests.launch import cli
from tests.launch.slurm_golden import signal_block, wait_block

CONFIG = "tests/launch/sweep_config.py"


def _sweep(workdir: str) -> sweeps.Sweep:
    return sweeps.expand(
        CONFIG, loader.load_config_file(CONFIG), loader.load_module(CONFIG), workdir
    )


def test_tiny_sweep_runs_reports_and_skips_finished_points(tmp_path):
    workdir = str(tmp_path / "sweep")
    out = cli.run("launch.sweep", f"--config={CONFIG}", f"--workdir={workdir}", "--parallel=2")
    # The diverging point fails; the others finish, and the command says so in one line.
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 sweep point(s) failed, e.g. point 2 (lr.base=1e+30): ")
    assert "non-finite at step" in last

    with open(os.path.join(workdir, "sweep.json")) as f:
        report = json.load(f)
    points = report["points"]
    assert [p["point"] for p in points] == ["lr.base=0.001", "lr.base=1e+30"]
    assert [p["status"] for p in points] == ["done", "failed"]
    assert report["swept"] == ["config.lr.base"]
    for done in points[:1]:
        assert done["step"] == 4 and 0.0 <= done["eval"]["accuracy"] <= 1.0
        assert done["steps_per_sec"] > 0 and "loss" in done["train"]
        assert os.path.isdir(os.path.join(workdir, done["point"], "checkpoints", "4"))
    failed = points[1]
    assert "non-finite" in failed["error"] and failed["error"].endswith("(exit status 1)")
    assert failed["overrides"] == {"optimizer.grad_clip_norm": 0.0, "lr.base": 1e30}
    # The diverging run itself (what `launch.train` does on a NaN): one error line, no
    # traceback, exit status 1, no checkpoint after the bad step, the lock released.
    failed_dir = os.path.join(workdir, "lr.base=1e+30")
    with open(os.path.join(failed_dir, "run.log")) as f:
        log = f.read()
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(
        "error: loss or gradient became non-finite at step "
    )
    assert "No checkpoint was written before it" in errors[0]
    assert not os.listdir(os.path.join(failed_dir, "checkpoints"))
    assert not os.path.exists(os.path.join(failed_dir, ".lock"))

    with open(os.path.join(workdir, "sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["lr.base"] for r in rows] == ["0.001", "1e+30"]
    assert float(rows[0]["eval.accuracy"]) == points[0]["eval"]["accuracy"]
    with open(os.path.join(workdir, "sweep.md")) as f:
        table = f.read()
    assert "2 point(s): 1 done, 1 failed" in table and "| failed: loss or gradient" in table
    with open(os.path.join(workdir, "sweep.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # A rerun starts nothing for the finished points.
    sweep = _sweep(workdir)
    sweep.points = sweep.points[:1]
    lines = []

    def no_process(*args, **kwargs):
        raise AssertionError("a finished point was started again")

    original = local.subprocess.Popen
    local.subprocess.Popen = no_process
    try:
        local.run_local(sweeps.jobs(sweep), parallel=2, log=lines.append)
    finally:
        local.subprocess.Popen = original
    assert lines[0].startswith("sweep: 1 run(s), 1 finished before, 0 to run")

    # --dry_run prints each point's exact command, marking the finished ones.
    out = cli.run("launch.sweep", f"--config={CONFIG}", f"--workdir={workdir}", "--dry_run")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "# point 1: finished, skipped on a run"
    assert lines[-1].endswith(
        f"-m launch.train --config={CONFIG} --workdir={workdir}/lr.base=1e+30 "
        "--config.optimizer.grad_clip_norm=0.0 --config.lr.base=1e+30"
    )


def test_report_on_a_remote_workdir():
    """collect and write_report go through epath, so they work on a non-local workdir."""
    with remote_fs.ram_workdir() as workdir:
        _check_remote_report(workdir)


def _check_remote_report(workdir: str) -> None:
    sweep = _sweep(workdir)

    first = epath.Path(sweep.points[0].workdir)
    first.mkdir(parents=True)
    (first / "metrics.jsonl").write_text(
        json.dumps({"step": 4, "split": "train", "loss": 0.5, "steps_per_sec": 2.0})
        + "\n"
        + json.dumps({"step": 4, "split": "eval", "accuracy": 0.625})
        + "\n"
    )
    paths = sweep_report.write_report(sweep, sweeps.collect(sweep))
    assert set(paths) == {"sweep.md", "sweep.csv", "sweep.json", "sweep.png"}
    written = json.loads((epath.Path(workdir) / "sweep.json").read_text())
    assert [p["status"] for p in written["points"]] == ["done", "not started"]
    assert written["points"][0]["eval"] == {"accuracy": 0.625}


def _sweep_main(argv: list[str], capsys) -> str:
    from launch import sweep as sweep_cli

    with cli.parsed_flags(["sweep", f"--config={CONFIG}", *argv]):
        sweep_cli.main()
    return capsys.readouterr().out


# A run holding workdirs' locks as launch.train does (WorkdirLock), until its stdin closes.
HOLD = """
import sys
from framework.train import workdir
locks = [workdir.WorkdirLock(d) for d in sys.argv[1:]]
for lock in locks:
    lock.acquire()
print("held", flush=True)
sys.stdin.read()
for lock in locks:
    lock.release()
"""


def test_a_rerun_leaves_points_a_live_run_holds_and_waits_for_them_with_wait(
    tmp_path, capsys, monkeypatch
):
    """`launch.sweep` killed while its points train leaves their runs going: a rerun reports
    them as running (not failed), starts no second copy, and with --wait reports how they
    end."""
    workdir = str(tmp_path / "sweep")
    points = [p.workdir for p in _sweep(workdir).points]
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, *points],
        cwd=cli.ROOT,
        env=cli.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline() == "held\n"
        holder = f"pid {child.pid} on host {socket.gethostname()}"

        def no_process(*args, **kwargs):
            raise AssertionError("a point a live run holds was started again")

        monkeypatch.setattr(local.subprocess, "Popen", no_process)
        out = _sweep_main([f"--workdir={workdir}"], capsys)
        assert f"[1/2] running lr.base=0.001 ({holder}): not started again, left to it" in out
        assert "sweep: ran 2 run(s): 2 still running in other processes" in out
        assert out.rstrip().endswith(
            "2 of 2 sweep point(s) still running in other processes, e.g. point 1 "
            f"(lr.base=0.001): {holder}; rerun with --wait to wait for them"
        )  # and no error: exit status 0
        with open(os.path.join(workdir, "sweep.md")) as f:
            table = f.read()
        assert "2 point(s): 2 running" in table and f"| running ({holder}) |" in table

        # --wait: the runs end while the runner waits for them, each in one of its --parallel
        # slots (one finished, one stopped by SIGTERM).
        real_sleep = time.sleep

        def runs_end(seconds):
            if child.poll() is None:
                for path, status in zip(points, (sweeps.DONE, sweeps.STOPPED)):
                    record = run_record.make(
                        status, step=4 if status == sweeps.DONE else 2, num_train_steps=4,
                        evaluation={"accuracy": 0.75},
                    )  # fmt: skip
                    run_record.write(path, record)
                child.stdin.close()
                child.wait(timeout=30)
            real_sleep(min(seconds, 0.05))

        monkeypatch.setattr(local.time, "sleep", runs_end)
        out = _sweep_main([f"--workdir={workdir}", "--wait", "--parallel=2"], capsys)
        assert f"[1/2] running lr.base=0.001 ({holder}): not started again, waiting for it" in out
        assert f"[2/2] running lr.base=1e+30 ({holder}): not started again, waiting for it" in out
        assert f"[1/2] done lr.base=0.001, run by {holder} (1 left)" in out
        assert f"[2/2] stopped lr.base=1e+30, run by {holder} (0 left)" in out
        assert "sweep: ran 2 run(s): 1 done, 1 stopped" in out
        assert "still running" not in out.splitlines()[-1]
        with open(os.path.join(workdir, "sweep.json")) as f:
            assert [p["status"] for p in json.load(f)["points"]] == ["done", "stopped"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_point_another_run_takes_after_the_check_is_running_not_failed(tmp_path):
    """A run that takes a point's workdir between the runner's check and its start: the
    runner's process fails on the lock, and the point counts as running, not failed."""
    workdir = str(tmp_path / "point")
    refused = (
        "import sys, time; time.sleep(0.3); "
        "print(sys.argv[1] + ' is in use by pid 1 on host h since t; wait for that run'); "
        "sys.exit(2)"
    )
    job = local.Job("point", 1, workdir, (sys.executable, "-c", refused, workdir), 4)
    lock = workdir_lib.WorkdirLock(workdir)
    lines = []

    def log(line: str) -> None:
        lines.append(line)
        if line == "[1/1] started point":
            lock.acquire()  # the other run takes it now

    try:
        counts = local.run_local([job], log=log, poll_seconds=0.05)
    finally:
        lock.release()
    assert counts == {local.RUNNING: 1}
    holder = f"pid {os.getpid()} on host {socket.gethostname()}"
    assert f"[1/1] running point ({holder}): not started again, left to it" in lines[2]
    assert not os.path.exists(os.path.join(workdir, run_record.RECORD_FILE))  # no failure


def test_slurm_dry_run_is_a_job_array_and_a_report_job(tmp_path, capsys):
    workdir = str(tmp_path / "s")
    out = _sweep_main(
        [f"--workdir={workdir}", "--launcher=slurm", "--nodes=2", "--gpus_per_node=4",
         "--dry_run"],
        capsys,
    )  # fmt: skip
    cwd = os.getcwd()
    train = f"srun --kill-on-bad-exit=1 python -m launch.train --config={CONFIG}"
    assert out == (
        "#!/bin/bash\n"
        "#SBATCH --job-name=adaptive-compute\n"
        "#SBATCH --nodes=2\n"
        "#SBATCH --ntasks-per-node=1\n"
        "#SBATCH --gpus-per-node=4\n"
        f"#SBATCH --output={workdir}/slurm/%x-%A_%a.out\n"
        "#SBATCH --open-mode=append\n"
        "#SBATCH --signal=B:USR1@120\n"
        "#SBATCH --requeue\n"
        "#SBATCH --array=0-1\n"
        "# One task per node: srun starts the command once on each host, and\n"
        "# jax.distributed.initialize() finds its peers from SLURM's environment.\n"
        "set -euo pipefail\n"
        f"cd {cwd}\n"
        "source .venv/bin/activate\n"
        "# Each process drives all GPUs of its node (not only GPU $SLURM_LOCALID).\n"
        "export JAX_LOCAL_DEVICE_IDS=0,1,2,3\n"
        + signal_block()
        + 'case "$SLURM_ARRAY_TASK_ID" in\n'
        f"  0) workdir={workdir}/lr.base=0.001; {train} --workdir={workdir}/lr.base=0.001"
        " --config.lr.base=0.001 & ;;\n"
        f"  1) workdir={workdir}/lr.base=1e+30; {train} --workdir={workdir}/lr.base=1e+30"
        " --config.optimizer.grad_clip_norm=0.0 --config.lr.base=1e+30 & ;;\n"
        '  *) echo "no command for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;\n'
        "esac\n" + wait_block() + f"sbatch --parsable {workdir}/slurm/adaptive-compute.sbatch\n"
        "#!/bin/bash\n"
        "#SBATCH --job-name=adaptive-compute-report\n"
        "#SBATCH --nodes=1\n"
        "#SBATCH --ntasks-per-node=1\n"
        f"#SBATCH --output={workdir}/slurm/%x-%j.out\n"
        "#SBATCH --open-mode=append\n"
        "#SBATCH --signal=B:USR1@120\n"
        "#SBATCH --requeue\n"
        "# One task per node: srun starts the command once on each host, and\n"
        "# jax.distributed.initialize() finds its peers from SLURM's environment.\n"
        "set -euo pipefail\n"
        f"cd {cwd}\n"
        "source .venv/bin/activate\n" + signal_block() + f"workdir={workdir}\n"
        f"srun --kill-on-bad-exit=1 python -m launch.sweep --config={CONFIG}"
        f" --workdir={workdir} --report_only &\n"
        + wait_block()
        + "sbatch --parsable --dependency=afterany:ARRAY_JOB_ID"
        f" {workdir}/slurm/adaptive-compute-report.sbatch\n"
    )


def test_tpu_vm_dry_run_runs_the_sweep_on_every_host(capsys):
    out = _sweep_main(
        ["--workdir=gs://b/sweep", "--launcher=tpu_vm", "--name=pod", "--zone=z",
         "--accelerator_type=v4-32", "--dry_run"],
        capsys,
    )  # fmt: skip
    assert out.startswith(
        "gcloud compute tpus tpu-vm ssh pod --zone=z --worker=all '--command=cd "
        '"$HOME"/adaptive-compute && mkdir -p "$HOME"/adaptive-compute-logs/gs_b_sweep && '
        "{ nohup setsid bash -c '\"'\"'trap term=1 TERM; .venv/bin/python -m launch.sweep "
        f"--config={CONFIG} --workdir=gs://b/sweep --launcher=local --parallel=1 "
    )
    assert "--log_name=run.{host}.log" in out and out.count("\n") == 1
