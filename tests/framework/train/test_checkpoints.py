"""`checkpoints.restore_state`: a run's state back from its workdir, by one step lookup
shared with `load_params`; a missing step or another model is one line. Steps that
cannot be restored; a full disk in Orbax's save thread."""

import errno
import logging
import os
import re

import jax
import numpy as np
import pytest
from orbax.checkpoint._src.path import async_path

from framework.config import loader
from framework.errors import ConfigError, RunError
from framework.train import checkpoints, disk_full
from framework.train import experiment as experiment_lib


def experiment(**overrides):
    return experiment_lib.build_experiment(
        loader.load_config("configs/parity/transformer.py:smoke", **overrides)
    )


def test_restore_state_reads_the_latest_or_a_given_step(tmp_path):
    exp = experiment()
    first = exp.init_state()
    later = first.replace(params=jax.tree.map(lambda x: x * 2 + 1, first.params), step=7)
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=3, asynchronous=False)
    ckpt.save(3, first)
    ckpt.save(7, later)
    ckpt.close()
    workdir = str(tmp_path)

    state, step = checkpoints.restore_state(workdir, exp.abstract_state)
    assert step == 7 and int(state.step) == 7
    jax.tree.map(np.testing.assert_array_equal, state.params, later.params)
    leaf = jax.tree.leaves(state.params)[0]
    assert leaf.sharding == jax.tree.leaves(exp.abstract_state.params)[0].sharding
    state, step = checkpoints.restore_state(workdir, exp.abstract_state, step=3)
    assert step == 3
    jax.tree.map(np.testing.assert_array_equal, state.params, first.params)
    # The checkpoints directory or one step's directory name the same checkpoints.
    directory = tmp_path / "checkpoints"
    assert checkpoints.restore_state(str(directory), exp.abstract_state)[1] == 7
    assert checkpoints.restore_state(str(directory / "3"), exp.abstract_state)[1] == 3
    # load_params reads the parameters through the same lookup (the latest step).
    params, step = checkpoints.load_params(workdir, exp.abstract_state.params)
    assert step == 7
    jax.tree.map(np.testing.assert_array_equal, params, later.params)

    with pytest.raises(ConfigError, match=r"^--checkpoint=5: .*checkpoints holds steps \[3, 7\]$"):
        checkpoints.restore_state(workdir, exp.abstract_state, step=5)
    wider = experiment(**{"model.hidden_size": 16}).abstract_state
    with pytest.raises(ConfigError, match=r"incompatible model: .* has shape .*; use its own$"):
        checkpoints.restore_state(workdir, wider, advice="use its own")
    with pytest.raises(ConfigError, match=r"^--workdir=.*nope: no such workdir or checkpoint$"):
        checkpoints.restore_state(str(tmp_path / "nope"), exp.abstract_state)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^--workdir=.*empty: holds no checkpoint"):
        checkpoints.restore_state(str(tmp_path / "empty"), exp.abstract_state)


# --------------------------------------------------------------------------------------
# Steps that cannot be restored: skipped by the readers, set aside by the trainer.
# --------------------------------------------------------------------------------------


def truncate_array_file(step_dir):
    """Halves the largest array data file of a step (a disk fault, a partial copy)."""
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.parent.name == "d"]
    largest = max(files, key=lambda p: p.stat().st_size)
    with open(largest, "r+b") as f:
        f.truncate(largest.stat().st_size // 2)


def saved_steps(tmp_path, exp, steps):
    """Checkpoints of `steps` whose parameters differ (init + step), and those states."""
    first = exp.init_state()
    states = {
        s: first.replace(params=jax.tree.map(lambda x: x + s, first.params), step=s) for s in steps
    }
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=len(steps) + 1, asynchronous=False)
    for s in steps:
        ckpt.save(s, states[s])
    ckpt.close()
    return states


def test_unreadable_steps_are_skipped_by_readers_and_set_aside_by_the_trainer(tmp_path, capsys):
    exp = experiment()
    states = saved_steps(tmp_path, exp, (10, 20, 30, 40))
    directory = tmp_path / "checkpoints"
    truncate_array_file(directory / "30")
    (directory / "40" / "default" / "_METADATA").unlink()
    (directory / "50").mkdir()  # another tool's half copy
    (directory / "50" / "_CHECKPOINT_METADATA").write_text("{}")
    listing = sorted(os.listdir(directory))
    same = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)  # noqa: E731
    capsys.readouterr()

    # The readers move nothing: asked for the latest, they note each unreadable step and
    # use the newest that restores; asked for an unreadable step, they stop in one line.
    state, step = checkpoints.restore_state(str(tmp_path), exp.abstract_state)
    assert step == 20
    same(state.params, states[20].params)
    notes = capsys.readouterr().out.splitlines()
    assert [n.split(" cannot")[0].split()[-3] for n in notes] == ["50", "40", "30"]
    assert all(n.endswith("; using step 20, the newest that restores") for n in notes)
    params, step = checkpoints.load_params(str(tmp_path), exp.abstract_state.params)
    assert step == 20
    same(params, states[20].params)
    with pytest.raises(
        ConfigError,
        match=r"^--checkpoint=30: checkpoint step 30 in .*checkpoints cannot be restored "
        r"\(OUT_OF_RANGE: Error reading .*\); its other steps: \[10, 20, 40, 50\] "
        r"\(choose another with --checkpoint=STEP\)$",
    ):
        checkpoints.restore_state(str(tmp_path), exp.abstract_state, step=30)
    assert sorted(os.listdir(directory)) == listing

    # The trainer resumes from the newest step that restores and sets the newer aside.
    capsys.readouterr()
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=5, asynchronous=False)
    state, step = ckpt.restore_newest(exp.abstract_state)
    assert step == 20
    same(state.params, states[20].params)
    lines = capsys.readouterr().out.splitlines()
    problems = ["it holds no saved state", "its metadata is missing", "OUT_OF_RANGE: Error"]
    for line, bad, problem in zip(lines, (50, 40, 30), problems, strict=True):
        assert re.fullmatch(
            rf"checkpoint step {bad} cannot be restored \({re.escape(problem)}.*\); "
            rf"moved it aside to {directory}/{bad}\.corrupt-\d{{8}}T\d{{6}}Z",
            line,
        ), line
    names = sorted(os.listdir(directory))
    assert names[:2] == ["10", "20"] and len(names) == 5
    assert all(re.fullmatch(r"(30|40|50)\.corrupt-\d{8}T\d{6}Z", n) for n in names[2:])
    # Orbax sees the moved steps no more: a new step 30 is saved beside the old one.
    assert ckpt.latest_step() == 20 and ckpt.manager.all_steps() == [10, 20]
    ckpt.save(30, states[30])
    ckpt.close()
    assert checkpoints.restore_state(str(tmp_path), exp.abstract_state)[1] == 30


def test_no_step_that_restores_stops_in_one_line_and_moves_nothing(tmp_path, monkeypatch):
    exp = experiment()
    saved_steps(tmp_path, exp, (10, 20))
    directory = tmp_path / "checkpoints"
    truncate_array_file(directory / "20")
    (directory / "10" / "default" / "_METADATA").write_text("{garbled")
    listing = sorted(os.listdir(directory))

    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=3, asynchronous=False)
    with pytest.raises(
        ConfigError,
        match=r"^no checkpoint in .*checkpoints restores \(step 20: OUT_OF_RANGE: .*; "
        r"step 10: its metadata is unreadable: JSONDecodeError: .*\); nothing was changed: "
        r"put back intact copies of these steps, or move the directory away to start afresh$",
    ):
        ckpt.restore_newest(exp.abstract_state)
    with pytest.raises(ConfigError, match=r"^--workdir=.*: no checkpoint in .* restores \("):
        checkpoints.restore_state(str(tmp_path), exp.abstract_state)
    # A read the storage refuses (access, availability) sets nothing aside either.
    denied = ValueError('PERMISSION_DENIED: Error reading "params/0": access denied')
    monkeypatch.setattr(ckpt.manager, "restore", lambda *a, **k: (_ for _ in ()).throw(denied))
    with pytest.raises(RunError, match=r"^checkpoint step 20 in .* cannot be read now \(PERM"):
        ckpt.restore_newest(exp.abstract_state)
    ckpt.close()
    assert sorted(os.listdir(directory)) == listing


def test_disk_full_in_a_background_save_is_one_error_naming_the_directory(
    tmp_path, monkeypatch, caplog
):
    exp = experiment()
    state = exp.init_state()
    ckpt = checkpoints.Checkpointer(str(tmp_path), keep=3, asynchronous=True)
    ckpt.save(10, state)
    ckpt.manager.wait_until_finished()

    async def no_space(path, text):  # Orbax's commit file, written in its save thread
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(async_path, "write_text", no_space)
    with disk_full.quiet_logs(), pytest.raises(disk_full.DiskFullError) as error:
        ckpt.save(20, state.replace(step=20))  # returns; the thread fails
        ckpt.close()
    assert str(error.value) == (
        f"disk full: no space left writing a checkpoint in {tmp_path / 'checkpoints'}"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    monkeypatch.undo()
    assert checkpoints.complete_steps(str(tmp_path)) == [10]
    assert checkpoints.restore_state(str(tmp_path), exp.abstract_state)[1] == 10
