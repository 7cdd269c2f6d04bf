"""Cloud TPU VMs: `python -m launch.tpu_vm ACTION --name=NAME --zone=ZONE [flags] [-- ...]`.

  create   make the VM or pod slice (--accelerator_type=v4-8, --spot, --project=P)
  setup    copy this checkout (working tree, without .git/.venv/runs/data) to every host
           and install it there in a virtualenv with `.[tpu]`
  run      start the command after `--` on every host, detached; it must name its
           --workdir (logs go to WORKDIR/logs/), e.g.
             -- python -m launch.train --config=configs/altup/t5.py:tiny --workdir=gs://b/run
  sweep    run `python -m launch.sweep ARGS --launcher=local --parallel=1`, ARGS after `--`
  status   the VM's state (READY, PREEMPTED, ...) and health
  logs     follow one host's log (--workdir=DIR of the run, --worker=0, --lines=100)
  stop     SIGTERM to the run: it saves a checkpoint and exits; the VM stays up
  delete   delete the VM

`--dry_run` prints the gcloud commands instead of running them. After a spot preemption:
`delete`, `create`, `setup`, then the same `run`, which resumes from the checkpoints.
"""

from __future__ import annotations

import os

from absl import flags

from framework import app, errors
from framework.launchers import tpu_vm
from launch import launch_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("name", None, "TPU VM (or pod slice) name.")
flags.DEFINE_string("zone", None, "Its zone, e.g. us-central2-b.")
flags.DEFINE_string(
    "accelerator_type", "v4-8", "TPU type, e.g. v4-8, v4-32 (a pod), v5litepod-16, v6e-8."
)
flags.DEFINE_string(
    "version",
    None,
    "TPU runtime; default by generation: tpu-ubuntu2204-base (v2-v4), v2-alpha-tpuv5-lite "
    "(v5litepod), v2-alpha-tpuv5 (v5p), v2-alpha-tpuv6e (v6e).",
)
flags.DEFINE_bool("spot", False, "create: a spot VM (cheaper; can be preempted).")
flags.DEFINE_string("project", None, "Google Cloud project (default: gcloud's).")
flags.DEFINE_string(
    "remote_dir", tpu_vm.DEFAULT_REMOTE_DIR, "Where the checkout goes on each host."
)
flags.DEFINE_string(
    "remote_python", tpu_vm.DEFAULT_PYTHON, "setup: the Python that makes the virtualenv."
)
flags.DEFINE_bool("copy_data", False, "setup: also copy ./data (prepared data sets).")
flags.DEFINE_integer("worker", 0, "logs: which host's log (0 .. hosts-1).")
flags.DEFINE_integer("lines", 100, "logs: how many lines of the log to show first.")

ACTIONS = ("create", "setup", "run", "sweep", "status", "logs", "stop", "delete")
_USAGE = (
    "python -m launch.tpu_vm ACTION --name=NAME --zone=ZONE [-- COMMAND]; "
    f"actions: {', '.join(ACTIONS)}"
)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vm_from_flags() -> tpu_vm.TpuVm:
    """The TPU VM that --name, --zone, --accelerator_type, --version, --project and
    --spot describe (also for launch/sweep.py)."""
    missing = [f"--{name}" for name in ("name", "zone") if not FLAGS[name].value]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise errors.ConfigError(f"{' and '.join(missing)} {verb} required: {_USAGE}")
    return tpu_vm.TpuVm(
        name=FLAGS.name,
        zone=FLAGS.zone,
        accelerator_type=FLAGS.accelerator_type,
        version=FLAGS.version,
        project=FLAGS.project,
        spot=FLAGS.spot,
    )


def sweep_command(sweep_args: list[str]) -> list[str]:
    """What each host runs for a sweep: the points one at a time, over the whole slice,
    each host logging to its own file in the points' directories."""
    return [
        "python",
        "-m",
        "launch.sweep",
        *sweep_args,
        "--launcher=local",
        "--parallel=1",
        "--log_name=run.{host}.log",
    ]


def commands(action: str, rest: list[str]) -> list[list[str]]:
    """The command lines for `action`; `rest` are the arguments after `--`."""
    if action not in ACTIONS:
        raise errors.ConfigError(f"unknown action {action!r}: {_USAGE}")
    if rest and action not in ("run", "sweep"):
        raise errors.ConfigError(f"{action} takes no command: unexpected {' '.join(rest)}")
    vm = vm_from_flags()
    if action in ("run", "sweep"):
        if not rest:
            what = "COMMAND" if action == "run" else "SWEEP_ARGS"
            raise errors.ConfigError(
                f"{action} needs what to run: python -m launch.tpu_vm {action} --name=NAME "
                f"--zone=ZONE -- {what}"
            )
        command = sweep_command(rest) if action == "sweep" else rest
        workdir = launch_flags.workdir_of(command)
        return [tpu_vm.run(vm, command, workdir, FLAGS.remote_dir)]
    if action == "setup":
        excludes = [e for e in tpu_vm.DEFAULT_EXCLUDES if not (FLAGS.copy_data and e == "./data")]
        return tpu_vm.setup(vm, _ROOT, FLAGS.remote_dir, FLAGS.remote_python, excludes)
    if action == "logs":
        if not FLAGS.workdir:
            raise errors.ConfigError("logs needs the run's --workdir=DIR (its logs are there)")
        return [tpu_vm.logs(vm, FLAGS.workdir, FLAGS.worker, FLAGS.lines, FLAGS.remote_dir)]
    single = {
        "create": tpu_vm.create,
        "status": tpu_vm.status,
        "stop": tpu_vm.stop,
        "delete": tpu_vm.delete,
    }
    return [single[action](vm)]


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise errors.ConfigError(f"name an action: {_USAGE}")
    action, rest = argv[1], argv[2:]
    try:
        tpu_vm.execute(commands(action, rest), FLAGS.dry_run)
    except KeyboardInterrupt:
        if action != "logs":  # Ctrl-C is how `logs` ends
            raise


if __name__ == "__main__":
    app.run(main, positional=True)
