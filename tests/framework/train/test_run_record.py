"""The run record (framework/train/run_record.py): written at a run's end, read by tables
and sweeps, and read from older workdirs that have none."""

from __future__ import annotations

import json

from framework.train import run_record


def test_a_record_reads_back_and_an_extended_run_is_incomplete(tmp_path):
    record = run_record.make(
        run_record.DONE, step=40, num_train_steps=40, train={"loss": 0.5, "steps_per_sec": 3.0},
        evaluation={"accuracy": 0.75}, num_params=10, steps_per_sec=4.0, batch_size=8,
        wall_seconds=12.345,
    )  # fmt: skip
    assert record["train"] == {"loss": 0.5}  # rates are the record's own fields
    assert (record["train_examples_per_sec"], record["wall_seconds"]) == (32.0, 12.3)
    run_record.write(str(tmp_path), record)
    assert run_record.read(str(tmp_path)) == record
    assert run_record.read(str(tmp_path), num_train_steps=40)["status"] == "done"
    assert run_record.read(str(tmp_path), num_train_steps=80)["status"] == "incomplete"
    run_record.clear(str(tmp_path))
    assert run_record.read(str(tmp_path))["status"] == "not started"


def _metrics(tmp_path, rows):
    lines = [json.dumps(row) for row in rows] + ['{"step": 9, "spl']  # a torn last line
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_a_workdir_without_a_record_is_read_from_its_metrics_and_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"num_train_steps": 20, "batch_size": 4}))
    info = {"step": 0, "split": "info", "num_params": 7, "flops_per_example": 5.0}
    train = [
        {"step": s, "split": "train", "loss": 1 / s, "steps_per_sec": r, "examples_per_sec": 4 * r}
        for s, r in ((5, 1.0), (10, 3.0), (15, 5.0))
    ]
    _metrics(tmp_path, [info, *train])
    running = run_record.read(str(tmp_path))
    assert (running["status"], running["step"], running["num_params"]) == ("incomplete", 15, 7)
    assert running["steps_per_sec"] == 4.0  # the median without the compiling interval
    assert running["train_examples_per_sec"] == 16.0 and running["train"] == {"loss": 1 / 15}
    _metrics(tmp_path, [info, *train, {"step": 20, "split": "eval", "accuracy": 0.5}])
    assert run_record.read(str(tmp_path))["status"] == "done"
    assert run_record.read(str(tmp_path))["eval"] == {"accuracy": 0.5}


def test_a_tables_old_result_file_is_a_finished_run(tmp_path):
    old = {"row": "A", "seed": 0, "steps": 30, "eval": {"accuracy": 0.9}, "train": {"loss": 0.1},
           "num_params": 3, "flops_per_example": 2.0, "train_examples_per_sec": 50.0,
           "wall_seconds": 4.0}  # fmt: skip
    (tmp_path / "result.json").write_text(json.dumps(old))
    record = run_record.read(str(tmp_path))
    assert (record["status"], record["step"], record["eval"]) == ("done", 30, {"accuracy": 0.9})
    assert (record["train_examples_per_sec"], record["num_params"]) == (50.0, 3)
