"""Storage faults on a real tiny run's workdir: an unreadable latest checkpoint is set
aside and the run resumes exactly from the one before; a full disk stops the run in one
line, keeps what was written, and a rerun resumes exactly."""

import errno
import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest
from orbax.checkpoint._src.path import async_path

from framework.train import disk_full, metric_writing, trainer
from tests.framework.train.test_checkpoints import truncate_array_file
from tests.framework.train.test_trainer import read_metrics, tiny_config


def without_rates(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_per_sec")} for r in rows]


def test_unreadable_latest_checkpoint_is_set_aside_and_the_run_resumes_exactly(
    tmp_path, full_run, capsys
):
    full, full_workdir = full_run
    workdir = tmp_path / "run"
    shutil.copytree(full_workdir, workdir)
    truncate_array_file(workdir / "checkpoints" / "20")
    capsys.readouterr()

    resumed = trainer.train_and_evaluate(tiny_config(), str(workdir))

    out = capsys.readouterr().out.splitlines()
    notes = [line for line in out if "cannot be restored" in line]
    assert len(notes) == 1 and notes[0].startswith(
        "checkpoint step 20 cannot be restored (OUT_OF_RANGE: Error reading"
    )
    assert f"moved it aside to {workdir / 'checkpoints' / '20.corrupt-'}" in notes[0]
    assert f"Resumed from {workdir / 'checkpoints'} at step 10" in out
    assert resumed.step == 20
    jax.tree.map(np.testing.assert_array_equal, full.params, resumed.params)
    assert without_rates(read_metrics(workdir)) == without_rates(read_metrics(full_workdir))
    names = sorted(os.listdir(workdir / "checkpoints"))
    assert names[:2] == ["10", "20"] and names[2].startswith("20.corrupt-")


def test_disk_full_stops_the_run_in_one_line_and_a_rerun_resumes_exactly(
    tmp_path, full_run, monkeypatch, caplog
):
    full, full_workdir = full_run
    workdir = tmp_path / "run"
    shutil.copytree(full_workdir, workdir)
    shutil.rmtree(workdir / "checkpoints" / "20")  # as if it had stopped after step 10

    # The disk fills while Orbax's save thread writes the checkpoint of step 20.
    async def no_space(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(async_path, "write_text", no_space)
    with pytest.raises(disk_full.DiskFullError) as error:
        trainer.train_and_evaluate(tiny_config(async_checkpointing=True), str(workdir))
    assert str(error.value) == (
        f"disk full: no space left writing a checkpoint in {workdir / 'checkpoints'}; free "
        "space there and rerun: it resumes from step 10, its last complete checkpoint"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no tracebacks
    # The previous checkpoint and every metrics line written are intact.
    assert [n for n in os.listdir(workdir / "checkpoints") if n.isdigit()] == ["10"]
    assert without_rates(read_metrics(workdir)) == without_rates(read_metrics(full_workdir))
    assert not (workdir / ".lock").exists()

    monkeypatch.undo()  # space freed
    resumed = trainer.train_and_evaluate(tiny_config(), str(workdir))
    assert resumed.step == 20
    jax.tree.map(np.testing.assert_array_equal, full.params, resumed.params)
    assert without_rates(read_metrics(workdir)) == without_rates(read_metrics(full_workdir))


class _FullDisk:
    """A file whose writes find no space (for `epath.Path.open`)."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def write(self, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_writing_metrics_names_the_file_and_keeps_earlier_lines(tmp_path, monkeypatch):
    writer = metric_writing.MetricWriter(str(tmp_path))
    writer.write(5, "train", {"loss": 0.5})
    path_type = type(writer.path)
    real_open = path_type.open
    monkeypatch.setattr(
        path_type,
        "open",
        lambda self, mode="r", **kw: _FullDisk(self) if "a" in mode else real_open(self, mode),
    )
    with pytest.raises(disk_full.DiskFullError) as error:
        writer.write(10, "train", {"loss": 0.25})
    assert str(error.value) == f"disk full: no space left writing {tmp_path / 'metrics.jsonl'}"
    monkeypatch.undo()
    writer.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 5, "split": "train", "loss": 0.5}]
