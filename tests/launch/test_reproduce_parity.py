"""`python -m launch.reproduce parity --preset=tiny` end to end, and reuse of finished runs."""

import json
import os

import pytest

from framework.config import registry
from framework.errors import ConfigError
from framework.experiments import tables
from tests.launch import cli

ROWS = ("transformer", "universal_transformer_act", "adatape")


def test_parity_table_tiny_preset_and_resume(tmp_path):
    args = ("parity", "--preset=tiny", f"--workdir={tmp_path}")
    first = cli.run("launch.reproduce", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    # Each model's progress line shows the metrics that model names.
    progress = [line for line in first.stdout.splitlines() if "steps/s | ETA" in line]
    assert sum("tape_length=" in line for line in progress) >= 1
    assert sum("act_updates=" in line for line in progress) >= 1
    assert all("accuracy=" in line and "loss=" in line for line in progress)
    table = (tmp_path / "table.md").read_text()
    for name in ("| Transformer |", "| Universal Transformer (ACT) |", "| AdaTape |"):
        assert name in table
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert set(rows) == {"Transformer", "Universal Transformer (ACT)", "AdaTape"}
    for name, row in rows.items():
        accuracy = row["eval.accuracy"]["mean"]
        assert 0.0 <= accuracy <= 1.0
        assert row["num_params"]["mean"] > 1000
        assert row["flops_per_example"]["mean"] > 0
        assert row["train_examples_per_sec"]["mean"] > 0
    # ATR with tau = 2 reads between 2 and T = 10 tape tokens.
    assert 2.0 <= rows["AdaTape"]["eval.tape_length"]["mean"] <= 10.0
    assert 1.0 <= rows["Universal Transformer (ACT)"]["eval.act_updates"]["mean"]
    assert "eval.tape_length" not in rows["Transformer"]

    # A second invocation reuses every finished run: nothing retrains. With --rows
    # (a name and a slug) the table has only those rows, in the table's order.
    result_files = [tmp_path / row / "seed_0" / "run.json" for row in ROWS]
    stamps = [os.stat(f).st_mtime_ns for f in result_files]
    second = cli.run("launch.reproduce", *args, "--rows=AdaTape,transformer")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "== " not in second.stdout  # no run was started
    assert [os.stat(f).st_mtime_ns for f in result_files] == stamps
    lines = [line for line in (tmp_path / "table.md").read_text().splitlines()]
    assert [line for line in lines if line.startswith("| Transformer |")] == [
        line for line in table.splitlines() if line.startswith("| Transformer |")
    ]
    assert [line.split(" | ")[0] for line in lines if line.startswith("| ")][1:] == [
        "| Transformer", "| AdaTape",
    ]  # fmt: skip


def test_unknown_table_and_preset_are_one_line_errors(tmp_path):
    result = cli.run("launch.reproduce", "nope", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert "error: unknown table 'nope'; known: " in result.stderr
    result = cli.run("launch.reproduce", "parity", "--preset=huge", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert "error: unknown preset 'huge' for parity" in result.stderr


def test_parallel_runs_are_launch_train_processes_with_the_same_results(tmp_path):
    """--parallel=2 trains each run as its own `launch.train` process (on its written
    table_config.json) and tabulates the same figures as training in one process."""
    args = ("parity", "--preset=tiny", "--rows=transformer,adatape")
    one = cli.run("launch.reproduce", *args, f"--workdir={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr[-3000:]
    two = cli.run("launch.reproduce", *args, f"--workdir={tmp_path / 'two'}", "--parallel=2")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "table: 2 run(s), 0 finished before, 2 to run, 2 at a time" in two.stdout
    for row in ("transformer", "adatape"):
        run = tmp_path / "two" / row / "seed_0"
        assert (run / "run.log").read_text().count("eval at step 20:") == 1
        assert (run / tables.RUN_CONFIG_FILE).exists()
    rows = [json.loads((tmp_path / d / "results.json").read_text())["rows"] for d in ("one", "two")]
    for name in ("Transformer", "AdaTape"):
        for key in ("eval.accuracy", "num_params", "flops_per_example", "eval.tape_length"):
            assert rows[0][name].get(key) == rows[1][name].get(key), (name, key)


def test_rows_are_selected_by_name_or_slug():
    table = registry.TABLES.get("parity")("tiny")
    selected = tables.select_rows(table, ["AdaTape", "transformer"])
    assert [row.name for row in selected.rows] == ["Transformer", "AdaTape"]
    with pytest.raises(ConfigError, match=r"unknown row\(s\) 'UT'; known: 'Transformer', "):
        tables.select_rows(table, ["UT"])


def test_parallel_table_run_held_by_a_live_run_is_reported_running(tmp_path, monkeypatch):
    """A table run whose workdir a live run holds (an earlier `launch.reproduce --parallel`
    was killed) is not started again, and the command says it is still running (the
    check `launch.reproduce` makes after `run_local`)."""
    from framework.errors import RunError
    from framework.launchers import local
    from framework.train import workdir as workdir_lib

    def no_process(*args, **kwargs):
        raise AssertionError("a run a live process holds was started again")

    monkeypatch.setattr(local.subprocess, "Popen", no_process)
    table = tables.select_rows(registry.TABLES.get("parity")("tiny"), ["transformer"])
    jobs = tables.jobs(table, str(tmp_path))
    with workdir_lib.WorkdirLock(jobs[0].workdir):
        counts = local.run_local(jobs, 1, what="table", log=lambda line: None)
    assert counts == {local.RUNNING: 1}
    with pytest.raises(RunError) as error:
        local.check_all_done(counts, str(tmp_path))
    assert str(error.value) == (
        "1 run(s) still running in other processes (see above): rerun when they end, or "
        "with --wait, to make the table"
    )
    with pytest.raises(RunError, match=r"^1 run\(s\) did not finish .*; 1 run\(s\) still running"):
        local.check_all_done({local.FAILED: 1, local.RUNNING: 1}, str(tmp_path))
    local.check_all_done({local.DONE: 2}, str(tmp_path))
