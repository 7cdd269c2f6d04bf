"""Run a config sweep: every point of the config file's `get_hyper(hyper)`.

  python -m launch.sweep --config=configs/adatape/parity.py:smoke --workdir=runs/sweep \
      [--parallel=N] [--wait] [--dry_run] [--launcher=local|slurm|tpu_vm] \
      [--config.FIELD=VALUE ...]

Each point trains in `WORKDIR/<slug of its overrides>` as its own `launch.train` process
(`--dry_run` prints those command lines). A rerun skips finished points and resumes
unfinished ones. At the end `WORKDIR/sweep.md`, `sweep.csv`, `sweep.json` and `sweep.png`
hold one row per point: swept values, final eval and train metrics, steps/s, status (a
failed point with its error line). `--report_only` only rewrites those files, e.g. after
a SLURM sweep. `--config.FIELD=VALUE` on the sweep's command line applies to every point.
A point whose workdir a live run still holds (e.g. after this command was killed while
its points trained) is reported as `running (pid P on host H)` and not started again;
`--wait` waits for it and reports how it ended. The command exits 0 when no point failed,
its last line saying how many are still running.

Launchers: `local` runs here, `--parallel` points at a time (each with its own GPUs on
a GPU host); `slurm` submits one job-array task per unfinished point and a report job
after them (flags of `launch.slurm`); `tpu_vm` runs this sweep on every worker of a TPU
VM (flags of `launch.tpu_vm`), one point at a time over the whole slice.
"""

from __future__ import annotations

import os
import shlex

from absl import flags
from ml_collections import config_flags

from framework import app, errors
from framework.config import loader
from framework.experiments import sweep_report, sweeps
from framework.launchers import local
from framework.launchers import slurm as slurm_lib
from framework.launchers import tpu_vm as tpu_lib
from framework.train import workdir as workdir_lib
from launch import (  # noqa: F401  (their flags configure the launchers)
    launch_flags,  # noqa: F401  (--dry_run)
    slurm,
    tpu_vm,
)

FLAGS = flags.FLAGS

flags.DEFINE_integer("parallel", 1, "Points run at a time (local launcher).")
flags.DEFINE_enum("launcher", "local", ["local", "slurm", "tpu_vm"], "Where the points run.")
flags.DEFINE_string(
    "metric", "", "The metric plotted, e.g. eval.accuracy (default: eval.accuracy or eval.loss)."
)
flags.DEFINE_bool("report_only", False, "Run nothing; rewrite sweep.md/csv/json/png.")
flags.DEFINE_string(
    "log_name", "run.log", "Each point's log file in its directory ({host}: the host name)."
)


def _sweep() -> sweeps.Sweep:
    if app.config() is None:
        raise errors.ConfigError("--config is required, e.g. --config=configs/adatape/parity.py")
    config_arg = config_flags.get_config_filename(FLAGS["config"])
    overrides = dict(config_flags.get_override_values(FLAGS["config"]))
    module = loader.load_module(config_arg.partition(":")[0])
    return sweeps.expand(config_arg, app.config(), module, FLAGS.workdir, overrides)


def _common_flags(sweep: sweeps.Sweep) -> list[str]:
    return [
        f"--config={sweep.config_arg}",
        *(f"--config.{k}={sweeps.format_value(v)}" for k, v in sweep.common_overrides.items()),
        f"--workdir={sweep.workdir}",
    ]


def _on_tpu_vm(sweep: sweeps.Sweep) -> None:
    command = tpu_vm.sweep_command(_common_flags(sweep))
    run = tpu_lib.run(tpu_vm.vm_from_flags(), command, sweep.workdir, FLAGS.remote_dir)
    tpu_lib.execute([run], FLAGS.dry_run)


def _on_slurm(sweep: sweeps.Sweep) -> None:
    results = {r["point"]: r for r in sweeps.collect(sweep)}
    todo = [p for p in sweep.points if results[p.slug]["status"] != sweeps.DONE]
    if not todo:
        print(f"every point of the sweep is finished; see {sweep.workdir}/sweep.md")
        return
    log_dir = os.path.join(sweep.workdir, "slurm")
    job = slurm.job_from_flags(log_dir)
    commands = [shlex.join(sweeps.train_command(sweep, p, python="python")) for p in todo]
    script = slurm_lib.sbatch_script(
        job, commands, chdir=os.getcwd(), workdirs=[p.workdir for p in todo]
    )
    array_id = slurm_lib.submit(
        script, FLAGS.dry_run, os.path.join(log_dir, f"{job.job_name}.sbatch")
    )
    report = " ".join(
        ["python -m launch.sweep", *map(shlex.quote, _common_flags(sweep)), "--report_only"]
    )
    report_job = slurm_lib.SlurmJob(
        **{**job.__dict__, "job_name": f"{job.job_name}-report", "nodes": 1, "gpus_per_node": 0}
    )
    slurm_lib.submit(
        slurm_lib.sbatch_script(report_job, [report], chdir=os.getcwd(), workdirs=[sweep.workdir]),
        FLAGS.dry_run,
        os.path.join(log_dir, f"{report_job.job_name}.sbatch"),
        dependency=array_id or "ARRAY_JOB_ID",
    )


def main() -> None:
    workdir_lib.check_workdir(FLAGS.workdir)
    sweep = _sweep()
    if FLAGS.launcher == "tpu_vm":
        return _on_tpu_vm(sweep)
    if FLAGS.launcher == "slurm":
        return _on_slurm(sweep)
    if FLAGS.dry_run:
        results = {r["point"]: r for r in sweeps.collect(sweep)}
        for point in sweep.points:
            result = results[point.slug]
            if result["status"] == sweeps.DONE:
                print(f"# point {point.index}: finished, skipped on a run")
            elif result["status"] == sweeps.RUNNING:
                print(f"# point {point.index}: running ({result['holder']}), not started again")
            print(shlex.join(sweeps.train_command(sweep, point)))
        return
    if not FLAGS.report_only:
        try:
            local.run_local(
                sweeps.jobs(sweep), FLAGS.parallel, FLAGS.log_name, wait=local.wait_flag()
            )
        except KeyboardInterrupt:
            _report(sweep)
            raise errors.RunError("sweep stopped; rerun the same command to resume it")
    _report(sweep)


def _report(sweep: sweeps.Sweep) -> None:
    results = sweeps.collect(sweep)
    paths = sweep_report.write_report(sweep, results, FLAGS.metric)
    print(sweep_report.markdown(sweep, results), flush=True)
    print("written: " + ", ".join(paths.values()), flush=True)
    failed = [r for r in results if r["status"] == sweeps.FAILED]
    running = [r for r in results if r["status"] == sweeps.RUNNING]
    still = ""
    if running:
        first = running[0]
        still = (
            f"{len(running)} of {len(results)} sweep point(s) still running in other processes, "
            f"e.g. point {first['index']} ({first['point']}): {first['holder']}; rerun with "
            "--wait to wait for them"
        )
    if failed:
        first = failed[0]
        raise errors.RunError(
            f"{len(failed)} of {len(results)} sweep point(s) failed, e.g. point "
            f"{first['index']} ({first['point']}): {first['error']}"
            + (f"; {still}" if still else "")
        )
    if still:
        print(still, flush=True)


if __name__ == "__main__":
    app.run(main)
