"""Cloud TPU VMs: `python -m launch.tpu_vm ACTION --name=NAME --zone=ZONE [flags] [-- ...]`.

  create   make the VM or pod slice (--accelerator_type=v4-8, --spot, --project=P)
  setup    copy this checkout (working tree, without .git/.venv/runs/data) to every host
           and install it there in a virtualenv with `.[tpu]`
  run      start the command after `--` on every host, detached; it must name its
           --workdir (logs go to WORKDIR/logs/), e.g.
             -- python -m launch.train --config=configs/altup/t5.py:tiny --workdir=gs://b/run
           With --watch, then watch it (below).
  watch    watch the run of the command after `--` (started with `run`) until it has
           finished: when the VM is PREEMPTED, TERMINATED or gone, delete, create, setup
           and run it again, which resumes from the checkpoints (--watch_max_restarts,
           --watch_backoff_secs, --watch_poll_secs); Ctrl-C stops watching, not the run
  sweep    run `python -m launch.sweep ARGS --launcher=local --parallel=1`, ARGS after `--`
  status   the VM's state (READY, PREEMPTED, ...) and health
  logs     follow one host's log (--workdir=DIR of the run, --worker=0, --lines=100)
  stop     SIGTERM to the run: it saves a checkpoint and exits; the VM stays up
  delete   delete the VM

`--dry_run` prints the gcloud commands instead of running them. After a spot preemption:
`delete`, `create`, `setup`, then the same `run`, which resumes from the checkpoints; or
let `watch` (or `run --watch`) do that.
"""

from __future__ import annotations

import os
import time

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
flags.DEFINE_bool("watch", False, "run: then watch the run, as the watch action does.")
_WATCH = tpu_vm.WatchOptions()
flags.DEFINE_float("watch_poll_secs", _WATCH.poll_secs, "watch: seconds between polls.")
flags.DEFINE_integer(
    "watch_max_restarts", _WATCH.max_restarts, "watch: restarts of the VM or command at most."
)
flags.DEFINE_float(
    "watch_backoff_secs",
    _WATCH.backoff_secs,
    "watch: seconds before the first restart, doubled for each restart in a row.",
)
flags.DEFINE_float(
    "watch_max_backoff_secs", _WATCH.max_backoff_secs, "watch: the longest wait before a restart."
)

ACTIONS = ("create", "setup", "run", "watch", "sweep", "status", "logs", "stop", "delete")
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
    if rest and action not in ("run", "watch", "sweep"):
        raise errors.ConfigError(f"{action} takes no command: unexpected {' '.join(rest)}")
    vm = vm_from_flags()
    if action in ("run", "watch", "sweep"):
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


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def watch(action: str, rest: list[str]) -> None:
    """`run --watch` and `watch`: (start the command, then) watch it (`tpu_vm.watch`)."""
    (run_command,) = commands(action, rest)
    vm = vm_from_flags()
    workdir = launch_flags.workdir_of(rest)
    steps = tpu_vm.restart_steps(vm, commands("setup", []), run_command)
    if FLAGS.dry_run:
        if action == "run":
            tpu_vm.execute([run_command], dry_run=True)
        print(f"# every {FLAGS.watch_poll_secs:g} s:")
        polls = [tpu_vm.state(vm), tpu_vm.run_state(vm, workdir, FLAGS.remote_dir)]
        tpu_vm.execute(polls, dry_run=True)
        print("# when the VM is PREEMPTED, TERMINATED or gone:")
        tpu_vm.execute([c for _, step in steps for c in step], dry_run=True)
        return
    options = tpu_vm.WatchOptions(
        poll_secs=FLAGS.watch_poll_secs,
        max_restarts=FLAGS.watch_max_restarts,
        backoff_secs=FLAGS.watch_backoff_secs,
        max_backoff_secs=FLAGS.watch_max_backoff_secs,
    )
    if "://" not in workdir:
        _log(
            f"note: --workdir={workdir} is on the VM's own disk unless it is a shared file "
            "system; a recreated VM has no checkpoints there (use gs://)"
        )
    if action == "run":
        tpu_vm.execute([run_command], dry_run=False)
    try:
        tpu_vm.watch(vm, steps, workdir, FLAGS.remote_dir, options, log=_log)
    except KeyboardInterrupt:
        _log(
            f"stopped watching {vm.name}; the run there goes on "
            "(python -m launch.tpu_vm status / logs / stop)"
        )
        raise SystemExit(130) from None


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise errors.ConfigError(f"name an action: {_USAGE}")
    action, rest = argv[1], argv[2:]
    if action == "watch" or (action == "run" and FLAGS.watch):
        watch(action, rest)
        return
    try:
        tpu_vm.execute(commands(action, rest), FLAGS.dry_run)
    except KeyboardInterrupt:
        if action != "logs":  # Ctrl-C is how `logs` ends
            raise


if __name__ == "__main__":
    app.run(main, positional=True)
