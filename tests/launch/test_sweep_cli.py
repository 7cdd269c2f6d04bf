"""`python -m launch.sweep` end to end on a tiny sweep with one failing point."""

import csv
import json
import os

from etils import epath

from framework import app, sweep_runner
from tests import remote_fs
from tests.launch import cli

CONFIG = "tests/launch/sweep_config.py"


def _sweep(workdir: str) -> sweep_runner.Sweep:
    return sweep_runner.expand(
        CONFIG, app.load_config_file(CONFIG), app.load_module(CONFIG), workdir
    )


def test_tiny_sweep_runs_reports_and_skips_finished_points(tmp_path):
    workdir = str(tmp_path / "sweep")
    out = cli.run("launch.sweep", f"--config={CONFIG}", f"--workdir={workdir}", "--parallel=2")
    # The diverging point fails; the others finish, and the command says so in one line.
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 3 sweep point(s) failed, e.g. point 3 (lr.base=1e+30): ")
    assert "non-finite at step" in last

    with open(os.path.join(workdir, "sweep.json")) as f:
        report = json.load(f)
    points = report["points"]
    assert [p["point"] for p in points] == ["lr.base=0.001", "lr.base=0.003", "lr.base=1e+30"]
    assert [p["status"] for p in points] == ["done", "done", "failed"]
    assert report["swept"] == ["config.lr.base"]
    for done in points[:2]:
        assert done["step"] == 4 and 0.0 <= done["eval"]["accuracy"] <= 1.0
        assert done["steps_per_sec"] > 0 and "loss" in done["train"]
        assert os.path.isdir(os.path.join(workdir, done["point"], "checkpoints", "4"))
    failed = points[2]
    assert "non-finite" in failed["error"] and failed["error"].endswith("(exit status 1)")
    assert failed["overrides"] == {"optimizer.grad_clip_norm": 0.0, "lr.base": 1e30}
    with open(os.path.join(workdir, "lr.base=1e+30", "run.log")) as f:
        assert "error: loss or gradient became non-finite" in f.read()

    with open(os.path.join(workdir, "sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["lr.base"] for r in rows] == ["0.001", "0.003", "1e+30"]
    assert float(rows[0]["eval.accuracy"]) == points[0]["eval"]["accuracy"]
    with open(os.path.join(workdir, "sweep.md")) as f:
        table = f.read()
    assert "3 point(s): 2 done, 1 failed" in table and "| failed: loss or gradient" in table
    with open(os.path.join(workdir, "sweep.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # A rerun starts nothing for the finished points.
    sweep = _sweep(workdir)
    sweep.points = sweep.points[:2]
    lines = []

    def no_process(*args, **kwargs):
        raise AssertionError("a finished point was started again")

    original = sweep_runner.subprocess.Popen
    sweep_runner.subprocess.Popen = no_process
    try:
        sweep_runner.run_local(sweep, parallel=2, log=lines.append)
    finally:
        sweep_runner.subprocess.Popen = original
    assert lines[0].startswith("sweep: 2 point(s), 2 finished before, 0 to run")

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
    paths = sweep_runner.write_report(sweep, sweep_runner.collect(sweep))
    assert set(paths) == {"sweep.md", "sweep.csv", "sweep.json", "sweep.png"}
    report = json.loads((epath.Path(workdir) / "sweep.json").read_text())
    assert [p["status"] for p in report["points"]] == ["done", "not started", "not started"]
    assert report["points"][0]["eval"] == {"accuracy": 0.625}
