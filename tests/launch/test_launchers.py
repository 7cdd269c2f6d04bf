"""The TPU VM and SLURM launchers: the exact commands and scripts they build (golden
strings), the CLI's dry run, and the one-line errors. Nothing is run, on no device."""

from __future__ import annotations

import os
import subprocess

import pytest
from absl import flags

from framework.errors import ConfigError, RunError
from framework.launchers import slurm, tpu_vm
from launch import launch_flags
from launch import slurm as slurm_cli
from launch import tpu_vm as tpu_vm_cli
from tests.launch import cli
from tests.launch.slurm_golden import signal_block, wait_block

FLAGS = flags.FLAGS
HOST = tpu_vm.TpuVm(name="my-vm", zone="us-central2-b", accelerator_type="v4-8")
POD = tpu_vm.TpuVm(
    name="my-pod", zone="us-central2-b", accelerator_type="v4-32", project="proj", spot=True
)
TPU_VM = ["gcloud", "compute", "tpus", "tpu-vm"]
# In `run`'s wrapper: wait for the command (again after a SIGTERM), then note its end.
WAIT = "wait $pid; status=$?; while kill -0 $pid 2> /dev/null; do wait $pid; status=$?; done"
ENDED = 'echo "launch.tpu_vm: the command ended with exit status $status${term:+, after SIGTERM}"'


@pytest.mark.parametrize(
    "accelerator_type, hosts",
    [
        ("v2-8", 1),
        ("v3-32", 4),
        ("v4-8", 1),
        ("v4-16", 2),
        ("v4-32", 4),
        ("v5p-8", 1),
        ("v5p-128", 16),
        ("v5litepod-4", 1),
        ("v5litepod-8", 1),
        ("v5litepod-16", 4),
        ("v6e-8", 1),
        ("v6e-256", 64),
        ("v9z-8", None),
        ("tpu", None),
    ],
)
def test_num_hosts(accelerator_type, hosts):
    assert tpu_vm.num_hosts(accelerator_type) == hosts
    assert tpu_vm.is_pod(accelerator_type) == (hosts != 1)


def test_default_version():
    assert tpu_vm.default_version("v4-32") == "tpu-ubuntu2204-base"
    assert tpu_vm.default_version("v5litepod-16") == "v2-alpha-tpuv5-lite"
    assert tpu_vm.default_version("v6e-8") == "v2-alpha-tpuv6e"
    assert HOST.runtime == "tpu-ubuntu2204-base"


def test_single_host_commands():
    assert tpu_vm.create(HOST) == TPU_VM + [
        "create",
        "my-vm",
        "--zone=us-central2-b",
        "--accelerator-type=v4-8",
        "--version=tpu-ubuntu2204-base",
    ]
    assert tpu_vm.setup(HOST, "/src") == [
        [
            "tar",
            "-czf",
            "/tmp/my-vm-source.tar.gz",
            "--exclude=./.git",
            "--exclude=./.venv",
            "--exclude=./runs",
            "--exclude=./data",
            "--exclude=__pycache__",
            "--exclude=*.egg-info",
            "--exclude=./.pytest_cache",
            "--exclude=./.ruff_cache",
            "-C",
            "/src",
            ".",
        ],
        TPU_VM
        + [
            "scp",
            "/tmp/my-vm-source.tar.gz",
            "my-vm:adaptive-compute-source.tar.gz",
            "--zone=us-central2-b",
        ],
        TPU_VM
        + [
            "ssh",
            "my-vm",
            "--zone=us-central2-b",
            '--command=mkdir -p "$HOME"/adaptive-compute'
            ' && tar -xzf "$HOME"/adaptive-compute-source.tar.gz -C "$HOME"/adaptive-compute'
            ' && rm "$HOME"/adaptive-compute-source.tar.gz'
            ' && cd "$HOME"/adaptive-compute'
            ' && { python3.11 -c "import ensurepip" 2> /dev/null || { sudo apt-get update -qq'
            " && sudo apt-get install -y -qq python3.11 python3.11-venv; }; }"
            " && python3.11 -m venv .venv"
            " && .venv/bin/pip install -q --upgrade pip"
            ' && .venv/bin/pip install -q -e ".[tpu]"',
        ],
    ]
    assert tpu_vm.run(HOST, ["python", "-m", "launch.train", "--workdir=/nfs/r"], "/nfs/r") == (
        TPU_VM
        + [
            "ssh",
            "my-vm",
            "--zone=us-central2-b",
            '--command=cd "$HOME"/adaptive-compute && mkdir -p /nfs/r/logs'
            " && { nohup setsid bash -c 'trap term=1 TERM;"
            " .venv/bin/python -m launch.train --workdir=/nfs/r"
            ' >> /nfs/r/logs/worker_"$(hostname)".log 2>&1 < /dev/null & pid=$!;'
            f" {WAIT}; {ENDED}"
            ' >> /nfs/r/logs/worker_"$(hostname)".log; exit $status\''
            " > /dev/null 2>&1 < /dev/null & }"
            ' && echo "started on $(hostname)"',
        ]
    )
    assert tpu_vm.status(HOST) == TPU_VM + [
        "describe",
        "my-vm",
        "--zone=us-central2-b",
        "--format=value(state,health,acceleratorType)",
    ]
    assert tpu_vm.logs(HOST, "runs/r") == TPU_VM + [
        "ssh",
        "my-vm",
        "--zone=us-central2-b",
        '--command=cd "$HOME"/adaptive-compute'
        ' && tail -n 100 -F runs/r/logs/worker_"$(hostname)".log',
    ]
    assert tpu_vm.stop(HOST) == TPU_VM + [
        "ssh",
        "my-vm",
        "--zone=us-central2-b",
        '--command=pkill -TERM -f "python -m launch\\." '
        '|| echo "no launch job running on $(hostname)"',
    ]
    assert tpu_vm.delete(HOST) == TPU_VM + ["delete", "my-vm", "--zone=us-central2-b", "--quiet"]


def test_pod_commands():
    where = ["--zone=us-central2-b", "--project=proj"]
    assert tpu_vm.create(POD) == TPU_VM + [
        "create",
        "my-pod",
        *where,
        "--accelerator-type=v4-32",
        "--version=tpu-ubuntu2204-base",
        "--spot",
    ]
    tar, scp, ssh = tpu_vm.setup(POD, "/src", remote_dir="/opt/ac", python="python3.12")
    assert tar[:3] == ["tar", "-czf", "/tmp/my-pod-source.tar.gz"]
    assert scp == TPU_VM + [
        "scp",
        "/tmp/my-pod-source.tar.gz",
        "my-pod:adaptive-compute-source.tar.gz",
        *where,
        "--worker=all",
    ]
    assert ssh[:-1] == TPU_VM + ["ssh", "my-pod", *where, "--worker=all"]
    assert ssh[-1] == (
        '--command=mkdir -p /opt/ac && tar -xzf "$HOME"/adaptive-compute-source.tar.gz -C /opt/ac'
        ' && rm "$HOME"/adaptive-compute-source.tar.gz && cd /opt/ac'
        ' && { python3.12 -c "import ensurepip" 2> /dev/null || { sudo apt-get update -qq'
        " && sudo apt-get install -y -qq python3.12 python3.12-venv; }; }"
        " && python3.12 -m venv .venv && .venv/bin/pip install -q --upgrade pip"
        ' && .venv/bin/pip install -q -e ".[tpu]"'
    )
    command = ["python", "-m", "launch.train", "--config=c.py:tiny", "--workdir=gs://b/run 1"]
    assert tpu_vm.run(POD, command, "gs://b/run 1") == TPU_VM + [
        "ssh",
        "my-pod",
        *where,
        "--worker=all",
        '--command=cd "$HOME"/adaptive-compute'
        ' && mkdir -p "$HOME"/adaptive-compute-logs/gs_b_run_1'
        " && { nohup setsid bash -c 'trap term=1 TERM;"
        " .venv/bin/python -m launch.train --config=c.py:tiny '\"'\"'--workdir=gs://b/run 1'\"'\"'"
        ' >> "$HOME"/adaptive-compute-logs/gs_b_run_1/worker.log 2>&1 < /dev/null & pid=$!;'
        f" {WAIT}; {ENDED}"
        ' >> "$HOME"/adaptive-compute-logs/gs_b_run_1/worker.log;'
        ' gcloud storage cp "$HOME"/adaptive-compute-logs/gs_b_run_1/worker.log'
        " '\"'\"'gs://b/run 1/logs/'\"'\"'worker_\"$(hostname)\".log; exit $status'"
        " > /dev/null 2>&1 < /dev/null & }"
        ' && echo "started on $(hostname)"',
    ]
    assert tpu_vm.status(POD) == TPU_VM + [
        "describe",
        "my-pod",
        *where,
        "--format=value(state,health,acceleratorType)",
    ]
    assert tpu_vm.logs(POD, "gs://b/run 1", worker=2, lines=50) == TPU_VM + [
        "ssh",
        "my-pod",
        *where,
        "--worker=2",
        '--command=cd "$HOME"/adaptive-compute'
        ' && tail -n 50 -F "$HOME"/adaptive-compute-logs/gs_b_run_1/worker.log',
    ]
    with pytest.raises(ConfigError, match="^--worker=4: v4-32 has workers 0-3$"):
        tpu_vm.logs(POD, "gs://b/run 1", worker=4)
    assert tpu_vm.stop(POD) == TPU_VM + [
        "ssh",
        "my-pod",
        *where,
        "--worker=all",
        '--command=pkill -TERM -f "python -m launch\\." '
        '|| echo "no launch job running on $(hostname)"',
    ]
    assert tpu_vm.delete(POD) == TPU_VM + ["delete", "my-pod", *where, "--quiet"]


def test_remote_path():
    assert tpu_vm.remote_path("~/a b/c") == "\"$HOME\"/'a b/c'"
    assert tpu_vm.remote_path("~") == '"$HOME"'
    assert tpu_vm.remote_path("/x/$y") == "'/x/$y'"


def test_execute_dry_run_prints_shell_lines():
    printed = []
    tpu_vm.execute([["echo", "a b"], tpu_vm.delete(HOST)], dry_run=True, print_fn=printed.append)
    assert printed == [
        "echo 'a b'",
        "gcloud compute tpus tpu-vm delete my-vm --zone=us-central2-b --quiet",
    ]


def test_execute_without_gcloud_is_one_line(monkeypatch):
    monkeypatch.setattr(tpu_vm.shutil, "which", lambda program: None)
    with pytest.raises(ConfigError) as error:
        tpu_vm.execute([tpu_vm.status(HOST)], dry_run=False)
    assert str(error.value) == (
        "gcloud is not on the PATH; install the Google Cloud CLI "
        "(https://cloud.google.com/sdk/docs/install) or use --dry_run"
    )


def test_execute_names_the_failing_command(monkeypatch):
    ran = []

    def fake_run(command, check):
        ran.append(command)
        return subprocess.CompletedProcess(command, 1 if command[4] == "describe" else 0)

    monkeypatch.setattr(tpu_vm.shutil, "which", lambda program: "/usr/bin/" + program)
    monkeypatch.setattr(tpu_vm.subprocess, "run", fake_run)
    with pytest.raises(RunError) as error:
        tpu_vm.execute([tpu_vm.status(HOST), tpu_vm.delete(HOST)], dry_run=False)
    assert str(error.value) == (
        "gcloud compute tpus tpu-vm describe my-vm --zone=us-central2-b "
        "'--format=value(state,health,acceleratorType)' failed with exit status 1"
    )
    assert ran == [tpu_vm.status(HOST)]  # nothing after the failure


def test_slurm_script_one_command_two_nodes():
    job = slurm.SlurmJob(
        job_name="altup_tiny",
        log_dir="/shared/runs/altup_tiny/slurm",
        nodes=2,
        gpus_per_node=4,
        cpus_per_task=16,
        partition="gpu",
        time="04:00:00",
        account="lab",
        extra_sbatch=("--exclusive", "#SBATCH --mem=0"),
    )
    command = "python -m launch.train --config=configs/altup/t5.py:tiny --workdir=runs/altup_tiny"
    script = slurm.sbatch_script(
        job, [command], chdir="/home/me/adaptive compute", workdirs=["runs/altup_tiny"]
    )
    assert script == (
        "#!/bin/bash\n"
        "#SBATCH --job-name=altup_tiny\n"
        "#SBATCH --nodes=2\n"
        "#SBATCH --ntasks-per-node=1\n"
        "#SBATCH --gpus-per-node=4\n"
        "#SBATCH --cpus-per-task=16\n"
        "#SBATCH --partition=gpu\n"
        "#SBATCH --time=04:00:00\n"
        "#SBATCH --account=lab\n"
        "#SBATCH --output=/shared/runs/altup_tiny/slurm/%x-%j.out\n"
        "#SBATCH --open-mode=append\n"
        "#SBATCH --signal=B:USR1@120\n"
        "#SBATCH --requeue\n"
        "#SBATCH --exclusive\n"
        "#SBATCH --mem=0\n"
        "# One task per node: srun starts the command once on each host, and\n"
        "# jax.distributed.initialize() finds its peers from SLURM's environment.\n"
        "set -euo pipefail\n"
        "cd '/home/me/adaptive compute'\n"
        "source .venv/bin/activate\n"
        "# Each process drives all GPUs of its node (not only GPU $SLURM_LOCALID).\n"
        "export JAX_LOCAL_DEVICE_IDS=0,1,2,3\n"
        'echo "== job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname), $(date)"\n'
        "# SLURM sends USR1 120 s before the time limit (see --signal).\n"
        "# scancel and preemption send TERM. The run gets SIGTERM (through scancel, to its\n"
        "# tasks: srun would kill them on a SIGTERM), saves a checkpoint and exits while this\n"
        "# shell waits for it.\n"
        "limit=0 stopping=0\n"
        "stop_run() {  # once: an old Slurm's scancel may signal this shell too\n"
        '  if [ "$stopping" = 1 ]; then return; fi\n'
        "  stopping=1\n"
        '  scancel --signal=TERM "$SLURM_JOB_ID" || true\n'
        "}\n"
        "trap 'limit=1; echo \"== time limit in about 120 s: SIGTERM to the run\"; stop_run' USR1\n"
        "trap 'echo \"== SIGTERM: passed on to the run\"; stop_run' TERM\n"
        "workdir=runs/altup_tiny\n"
        "srun --kill-on-bad-exit=1 --cpus-per-task=16 python -m launch.train"
        " --config=configs/altup/t5.py:tiny --workdir=runs/altup_tiny &\n"
        "run=$!\n"
        "while :; do\n"
        '  status=0; wait "$run" || status=$?\n'
        '  kill -0 "$run" 2>/dev/null || break\n'
        "done\n"
        "# Stopped with a checkpoint for the time limit, not finished: requeue and resume.\n"
        'if [ "$limit" = 1 ] && [ "$status" = 0 ] && '
        '! grep -qs \'"status": "done"\' "$workdir/run.json"; then\n'
        '  echo "== requeueing job $SLURM_JOB_ID: the run resumes from its checkpoint"\n'
        '  scontrol requeue "$SLURM_JOB_ID"\n'
        "fi\n"
        'exit "$status"\n'
    )


def test_slurm_script_array_with_max_parallel():
    job = slurm.SlurmJob(job_name="sweep", log_dir="runs/s/slurm/", venv="/opt/venv/")
    commands = [f"python -m launch.train --workdir=runs/s/lr={lr}" for lr in ("0.1", "0.01", "1")]
    workdirs = [f"runs/s/lr={lr}" for lr in ("0.1", "0.01", "1")]
    script = slurm.sbatch_script(job, commands, chdir="/repo", max_parallel=2, workdirs=workdirs)
    assert script == (
        "#!/bin/bash\n"
        "#SBATCH --job-name=sweep\n"
        "#SBATCH --nodes=1\n"
        "#SBATCH --ntasks-per-node=1\n"
        "#SBATCH --output=runs/s/slurm/%x-%A_%a.out\n"
        "#SBATCH --open-mode=append\n"
        "#SBATCH --signal=B:USR1@120\n"
        "#SBATCH --requeue\n"
        "#SBATCH --array=0-2%2\n"
        "# One task per node: srun starts the command once on each host, and\n"
        "# jax.distributed.initialize() finds its peers from SLURM's environment.\n"
        "set -euo pipefail\n"
        "cd /repo\n"
        "source /opt/venv/bin/activate\n" + signal_block() + 'case "$SLURM_ARRAY_TASK_ID" in\n'
        "  0) workdir=runs/s/lr=0.1; srun --kill-on-bad-exit=1 python -m launch.train"
        " --workdir=runs/s/lr=0.1 & ;;\n"
        "  1) workdir=runs/s/lr=0.01; srun --kill-on-bad-exit=1 python -m launch.train"
        " --workdir=runs/s/lr=0.01 & ;;\n"
        "  2) workdir=runs/s/lr=1; srun --kill-on-bad-exit=1 python -m launch.train"
        " --workdir=runs/s/lr=1 & ;;\n"
        '  *) echo "no command for array task $SLURM_ARRAY_TASK_ID" >&2; exit 1 ;;\n'
        "esac\n" + wait_block()
    )


def test_slurm_script_without_requeue_or_signal():
    """--signal_grace=0 asks for no signal before the limit; --norequeue for no requeue.
    A scancel's TERM still reaches the run through the batch shell."""
    command = "python -m launch.train --workdir='runs/a b'"
    for grace, requeue, directives in [
        (0, True, "#SBATCH --requeue\n"),
        (300, False, "#SBATCH --signal=B:USR1@300\n"),
    ]:
        job = slurm.SlurmJob(job_name="j", log_dir="/l", signal_grace=grace, requeue=requeue)
        assert slurm.sbatch_script(job, [command], chdir="/r", workdirs=["runs/a b"]) == (
            "#!/bin/bash\n"
            "#SBATCH --job-name=j\n"
            "#SBATCH --nodes=1\n"
            "#SBATCH --ntasks-per-node=1\n"
            "#SBATCH --output=/l/%x-%j.out\n"
            "#SBATCH --open-mode=append\n"
            + directives
            + "# One task per node: srun starts the command once on each host, and\n"
            "# jax.distributed.initialize() finds its peers from SLURM's environment.\n"
            "set -euo pipefail\n"
            "cd /r\n"
            "source .venv/bin/activate\n" + signal_block(grace) + "workdir='runs/a b'\n"
            "srun --kill-on-bad-exit=1 python -m launch.train --workdir='runs/a b' &\n"
            + wait_block(requeue=bool(grace and requeue))
        )


def test_slurm_bad_input():
    job = slurm.SlurmJob(job_name="j", log_dir="/l")
    with pytest.raises(ConfigError, match="no command"):
        slurm.sbatch_script(job, [], chdir="/repo")
    with pytest.raises(ConfigError, match="--signal_grace=-1: must be at least 0 seconds"):
        slurm.sbatch_script(
            slurm.SlurmJob(job_name="j", log_dir="/l", signal_grace=-1), ["x"], "/r"
        )
    with pytest.raises(ConfigError, match="take no spaces"):
        slurm.sbatch_script(
            slurm.SlurmJob(job_name="j", log_dir="/l", extra_sbatch=("--mem 0",)), ["x"], "/r"
        )


def test_slurm_submit(monkeypatch, tmp_path):
    printed = []
    script = "#!/bin/bash\n#SBATCH --output=/l/%x-%j.out\nsrun true\n"
    assert slurm.submit(script, True, "/l/j.sbatch", printed.append, dependency="41") is None
    assert printed == [
        script.rstrip("\n"),
        "sbatch --parsable --dependency=afterany:41 /l/j.sbatch",
    ]

    monkeypatch.setattr(slurm.shutil, "which", lambda program: None)
    with pytest.raises(ConfigError) as error:
        slurm.submit(script, False, str(tmp_path / "j.sbatch"))
    assert str(error.value) == slurm.SBATCH_MISSING
    assert not os.listdir(tmp_path)  # nothing written

    monkeypatch.setattr(slurm.shutil, "which", lambda program: "/usr/bin/sbatch")
    monkeypatch.setattr(
        slurm.subprocess,
        "run",
        lambda command, **kw: subprocess.CompletedProcess(command, 0, "123;cluster\n", ""),
    )
    logs = tmp_path / "logs"
    script = f"#!/bin/bash\n#SBATCH --output={logs}/%x-%j.out\nsrun true\n"
    assert slurm.submit(script, False, str(tmp_path / "s" / "j.sbatch")) == "123"
    assert (tmp_path / "s" / "j.sbatch").read_text() == script
    assert logs.is_dir()  # SLURM would not make it


def test_workdir_of():
    assert launch_flags.workdir_of(["python", "--workdir=a", "--workdir", "b"]) == "b"
    with pytest.raises(ConfigError, match="needs --workdir=DIR"):
        launch_flags.workdir_of(["python", "-m", "launch.train"])


def _main_in_process(module, argv: list[str], capsys) -> str:
    with cli.parsed_flags(argv) as positional:
        module.main(positional)
    return capsys.readouterr().out


def test_tpu_vm_cli_dry_run_for_a_pod(capsys):
    out = _main_in_process(
        tpu_vm_cli,
        [
            "tpu_vm",
            "run",
            "--name=my-pod",
            "--zone=us-central2-b",
            "--accelerator_type=v4-32",
            "--dry_run",
            "--",
            "python",
            "-m",
            "launch.train",
            "--config=configs/altup/t5.py:tiny",
            "--workdir=/nfs/altup_tiny",
        ],
        capsys,
    )
    assert out == (
        "gcloud compute tpus tpu-vm ssh my-pod --zone=us-central2-b --worker=all"
        ' \'--command=cd "$HOME"/adaptive-compute && mkdir -p /nfs/altup_tiny/logs'
        " && { nohup setsid bash -c '\"'\"'trap term=1 TERM; .venv/bin/python -m launch.train"
        " --config=configs/altup/t5.py:tiny --workdir=/nfs/altup_tiny"
        ' >> /nfs/altup_tiny/logs/worker_"$(hostname)".log 2>&1 < /dev/null & pid=$!;'
        f" {WAIT}; {ENDED}"
        ' >> /nfs/altup_tiny/logs/worker_"$(hostname)".log; exit $status'
        "'\"'\"' > /dev/null 2>&1 < /dev/null & }"
        ' && echo "started on $(hostname)"\'\n'
    )


def test_tpu_vm_cli_bad_input():
    def commands(action, rest=(), *flag_args):
        with cli.parsed_flags(["tpu_vm", *(flag_args or ("--name=x", "--zone=z"))]):
            return tpu_vm_cli.commands(action, list(rest))

    with pytest.raises(ConfigError, match="unknown action 'start': python -m launch.tpu_vm"):
        commands("start")
    with pytest.raises(ConfigError, match="^--name and --zone are required"):
        commands("status", [], "--spot")
    with pytest.raises(ConfigError, match="needs --workdir=DIR"):
        commands("run", ["python", "-m", "launch.train"])
    with pytest.raises(ConfigError, match="status takes no command"):
        commands("status", ["x"])
    sweep = commands("sweep", ["--config=c.py", "--workdir=/s"])[0][-1]
    assert "python -m launch.sweep --config=c.py --workdir=/s --launcher=local --parallel=1 " in (
        sweep.replace(".venv/bin/", "")
    )


def test_slurm_cli_dry_run(capsys):
    out = _main_in_process(
        slurm_cli,
        [
            "slurm",
            "--nodes=2",
            "--gpus_per_node=2",
            "--job_name=t5",
            "--signal_grace=300",
            "--dry_run",
            "--",
            "python",
            "-m",
            "launch.train",
            "--workdir=/shared/t5",
        ],
        capsys,
    )
    assert "#SBATCH --output=/shared/t5/slurm/%x-%j.out\n" in out
    assert "\n#SBATCH --signal=B:USR1@300\n#SBATCH --requeue\n" in out
    assert (
        "\nworkdir=/shared/t5\nsrun --kill-on-bad-exit=1 python -m launch.train "
        "--workdir=/shared/t5 &\n"
    ) in out
    assert out.endswith("\nsbatch --parsable /shared/t5/slurm/t5.sbatch\n")


def test_cli_without_gcloud_is_one_line():
    result = cli.run(
        "launch.tpu_vm", "status", "--name=x", "--zone=z", extra_env={"PATH": "/nonexistent"}
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: gcloud is not on the PATH; install the Google Cloud CLI "
        "(https://cloud.google.com/sdk/docs/install) or use --dry_run\n"
    )
