"""A remote workdir (`gs://bucket/path` in production) end to end, on TF's in-memory `ram://`.

`tests.remote_fs` serves `ram://` the way `gs://` is served (epath's TensorFlow backend,
Orbax's GCS code path, TensorStore for the arrays) without a network; see its docstring
for what that does not cover.
"""

import json
import os

import pytest
from etils import epath

from framework.config import loader, schema
from framework.errors import ConfigError
from framework.experiments import tables
from framework.train import checkpoints, run_config, run_record
from framework.train import workdir as workdir_lib
from projects.adatape import image_plots
from tests import remote_fs


@pytest.fixture
def workdir():
    with remote_fs.ram_workdir() as path:
        yield path


def smoke_config(**overrides):
    config = loader.load_config("configs/parity/transformer.py:smoke")
    config.num_train_steps = 4
    config.log_every_steps = 2
    config.eval_every_steps = 0  # the last step evaluates anyway
    config.checkpoint_every_steps = 2
    config.compute_flops = False
    config.lr.warmup_steps = 1
    config.dataset.num_eval_examples = 64
    config.update(overrides)
    return config


def read_jsonl(path: epath.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_run_writes_everything_in_the_remote_workdir_and_resumes(workdir, capsys):
    root = epath.Path(workdir)
    config = smoke_config()
    first = schema.trainer(config)(config, workdir, stop_after_step=2)
    assert first.preempted and first.step == 2
    assert f"note: {workdir} is not locked (object stores have no file locks)" in (
        capsys.readouterr().out
    )
    assert not os.path.exists("ram:")  # nothing went to a local path named like the URL

    # The second run resumes from the step-2 checkpoint (its arrays in TensorStore, its
    # directories and metadata through epath), with a cadence change: config.json is
    # rewritten and config_changes.jsonl appended to, both remote.
    config = smoke_config(log_every_steps=1)
    second = schema.trainer(config)(config, workdir)
    assert second.step == 4 and not second.preempted and second.eval
    assert "Resumed from" in capsys.readouterr().out
    assert json.loads((root / "config.json").read_text())["log_every_steps"] == 1
    (change,) = read_jsonl(root / run_config.CHANGES_FILE)
    assert change["step"] == 2 and "config.log_every_steps" in change["changes"]
    rows = {(row["step"], row["split"]) for row in read_jsonl(root / "metrics.jsonl")}
    assert rows == {(0, "info"), (2, "train"), (3, "train"), (4, "train"), (4, "eval")}
    assert list(root.glob("events.out.tfevents.*"))  # TensorBoard, through tf.summary
    ckpt = root / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["2", "4"]
    assert (ckpt / "4" / checkpoints.ORBAX_COMMIT_FILE).exists()  # GCS-style commit
    assert (ckpt / "4" / "default" / "manifest.ocdbt").exists()  # written by TensorStore

    # A third call finds the run complete: it restores step 4 and trains nothing.
    third = schema.trainer(config)(config, workdir)
    assert third.step == 4 and not third.train
    assert len(read_jsonl(root / "metrics.jsonl")) == len(rows)


def test_table_writes_its_results_in_the_remote_workdir_and_reuses_them(workdir, capsys):
    row = tables.Row("Tiny", smoke_config(num_train_steps=2), seeds=(0,))
    columns = [tables.Column("eval.accuracy", "accuracy")]

    def report(table, summary, directory):
        image_plots.accuracy_vs_speed(table.title, summary, directory)

    def extra(table, directory):  # as the images table adds its measured speeds
        return {"Tiny": {"eval_images_per_sec": 100.0}}

    table = tables.Table("Remote", [row], columns, extra=extra, report=report)
    first = tables.run_table(table, workdir)
    assert "== Tiny, seed 0" in capsys.readouterr().out
    root = epath.Path(workdir)
    result = json.loads((root / "tiny" / "seed_0" / run_record.RECORD_FILE).read_text())
    assert (result["status"], result["step"], result["num_train_steps"]) == ("done", 2, 2)
    assert result["num_params"] > 0 and "accuracy" in result["eval"]
    assert json.loads((root / "results.json").read_text())["rows"]["Tiny"]["seeds"] == [0]
    assert (root / "table.md").read_text().startswith("# Remote\n")
    assert (root / image_plots.ACCURACY_VS_SPEED).read_bytes().startswith(b"\x89PNG")

    second = tables.run_table(table, workdir)  # reuses the run's record: no training
    assert "== Tiny" not in capsys.readouterr().out
    assert second == first
    assert not os.path.exists("ram:")


def test_incomplete_remote_checkpoints_are_removed(workdir):
    directory = checkpoints.checkpoint_directory(workdir)
    assert directory == f"{workdir}/checkpoints"  # not made absolute like a local path
    root = epath.Path(directory)
    for name, files in {
        "2": ["commit_success.txt", "default/_METADATA"],  # committed: kept
        "4": ["default/_METADATA"],  # a run killed while writing it on GCS
        "6.orbax-checkpoint-tmp-17": ["x"],  # the local-style temporary name
    }.items():
        for file in files:
            (root / name / file).parent.mkdir(parents=True, exist_ok=True)
            (root / name / file).write_text("x")
    assert checkpoints.remove_temporaries(workdir) == ["4", "6.orbax-checkpoint-tmp-17"]
    assert [p.name for p in root.iterdir()] == ["2"]


def test_check_workdir_accepts_known_schemes_and_refuses_others():
    workdir_lib.check_workdir("gs://bucket/runs/x")  # no network: nothing is looked up
    with pytest.raises(ConfigError, match=r"foo:// is not a file system etils.epath serves"):
        workdir_lib.check_workdir("foo://bucket/x")
    with pytest.raises(ConfigError, match="no bucket given"):
        workdir_lib.check_workdir("gs://")
