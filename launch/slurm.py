"""SLURM GPU clusters: submit one run as a batch job.

  python -m launch.slurm --nodes=2 --gpus_per_node=8 [--partition=P] [--time=HH:MM:SS] \
      [--account=A] [--job_name=NAME] [--sbatch=OPTION ...] [--signal_grace=120] \
      [--norequeue] [--dry_run] \
      -- python -m launch.train --config=configs/altup/t5.py:tiny --workdir=DIR

Writes DIR/slurm/NAME.sbatch and submits it with sbatch; the job's output goes to
DIR/slurm/NAME-<job id>.out. One process per node drives all its GPUs; the nodes find
each other through SLURM's environment. DIR must be on a file system the nodes share (or
give --slurm_dir for a gs:// workdir). Paths in the command are relative to this checkout,
where the job runs with its virtualenv (--venv). `--dry_run` prints the script instead.
Submitting the same command again resumes the run from its checkpoints.

Time limit and preemption: `--signal_grace` seconds before the job's time limit the run
gets SIGTERM, saves a checkpoint and exits, and the job requeues itself and resumes from
it (`--norequeue`: it only stops); on scancel or preemption the run gets SIGTERM too.
The job's output file is appended to across restarts. See framework/launchers/slurm.py.
"""

from __future__ import annotations

import os
import shlex

from absl import flags

from framework import app, errors
from framework.experiments import report
from framework.launchers import slurm
from launch import launch_flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("nodes", 1, "Hosts for the job; one process runs on each.")
flags.DEFINE_integer("gpus_per_node", None, "GPUs per host (default: the cluster's).")
flags.DEFINE_integer("cpus_per_task", None, "CPUs for the process on each host.")
flags.DEFINE_string("partition", None, "SLURM partition (default: the cluster's).")
flags.DEFINE_string("time", None, "Time limit, e.g. 04:00:00 or 2-00:00:00.")
flags.DEFINE_string("account", None, "Account to charge.")
flags.DEFINE_string("job_name", None, "Job name (default: the workdir's last part).")
flags.DEFINE_multi_string(
    "sbatch", [], "More sbatch options, one per flag, e.g. --sbatch=--exclusive."
)
flags.DEFINE_string("venv", ".venv", "Virtualenv activated on the nodes (relative: to here).")
flags.DEFINE_integer(
    "signal_grace",
    slurm.DEFAULT_SIGNAL_GRACE,
    "Seconds before the time limit at which the run gets SIGTERM (it saves a checkpoint); "
    "0: no signal before the limit, no requeue.",
)
flags.DEFINE_bool(
    "requeue",
    True,
    "Requeue the job after the run stopped for the time limit (and let SLURM requeue it on "
    "preemption); the requeued job resumes from the checkpoint.",
)
flags.DEFINE_string(
    "slurm_dir", None, "Where the sbatch script and the job's output go (default: WORKDIR/slurm)."
)

_USAGE = (
    "python -m launch.slurm [--nodes=N --gpus_per_node=G ...] -- "
    "python -m launch.train --config=... --workdir=DIR"
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def job_name_for(workdir: str) -> str:
    """A job name from the workdir's last part, e.g. `altup_tiny` for gs://b/altup_tiny."""
    name = report.slug(os.path.basename(workdir.rstrip("/")))
    return name.strip("_") or "adaptive-compute"


def job_from_flags(log_dir: str, job_name: str = "adaptive-compute") -> slurm.SlurmJob:
    """The job the flags describe, its output in `log_dir`; `job_name` unless --job_name
    is given (also for launch/sweep.py)."""
    if FLAGS.nodes < 1:
        raise errors.ConfigError(f"--nodes={FLAGS.nodes}: must be at least 1")
    return slurm.SlurmJob(
        job_name=FLAGS.job_name or job_name,
        log_dir=log_dir,
        nodes=FLAGS.nodes,
        gpus_per_node=FLAGS.gpus_per_node,
        cpus_per_task=FLAGS.cpus_per_task,
        partition=FLAGS.partition,
        time=FLAGS.time,
        account=FLAGS.account,
        extra_sbatch=tuple(FLAGS.sbatch),
        venv=FLAGS.venv,
        signal_grace=FLAGS.signal_grace,
        requeue=FLAGS.requeue,
    )


def main(argv: list[str]) -> None:
    command = argv[1:]
    if not command:
        raise errors.ConfigError(f"give the command to run after --: {_USAGE}")
    workdir = launch_flags.workdir_of(command)
    if FLAGS.slurm_dir:
        log_dir = FLAGS.slurm_dir
    elif "://" in workdir:
        raise errors.ConfigError(
            f"--workdir={workdir} is not a local path: give --slurm_dir=DIR for the "
            "sbatch script and the job's output"
        )
    else:
        log_dir = os.path.join(workdir, "slurm")
    log_dir = os.path.normpath(os.path.join(ROOT, log_dir))  # relative paths: to the checkout
    job = job_from_flags(log_dir, job_name_for(workdir))
    script = slurm.sbatch_script(job, [shlex.join(command)], chdir=ROOT, workdirs=[workdir])
    script_path = os.path.join(log_dir, f"{job.job_name}.sbatch")
    job_id = slurm.submit(script, FLAGS.dry_run, script_path)
    if job_id:
        print(f"submitted job {job_id}; output: {log_dir}/{job.job_name}-{job_id}.out")


if __name__ == "__main__":
    app.run(main, positional=True)
