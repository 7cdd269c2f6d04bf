"""A workdir is one run's, and always resumes: lock, saved config, crash leftovers, SIGTERM."""

import errno
import json
import os
import signal
import socket
import subprocess

import jax
import numpy as np
import pytest

from framework.errors import ConfigError
from framework.train import checkpoints, preemption, run_config, trainer
from framework.train import workdir as workdir_lib
from tests.framework.train.test_trainer import read_metrics, restore_params, tiny_config


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _no_per_sec(rows):
    return [{k: v for k, v in r.items() if not k.endswith("_per_sec")} for r in rows]


# --------------------------------------------------------------------------------------
# The lock (the conflict between two real runs is in tests/launch/test_workdir_cli.py).
# --------------------------------------------------------------------------------------


def test_lock_is_exclusive_and_names_its_holder(tmp_path):
    first = workdir_lib.WorkdirLock(str(tmp_path))
    first.acquire()
    record = json.loads((tmp_path / ".lock").read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    with pytest.raises(ConfigError, match=rf"is in use by pid {os.getpid()} on host .* since "):
        workdir_lib.WorkdirLock(str(tmp_path)).acquire()
    first.release()
    assert not (tmp_path / ".lock").exists()
    with workdir_lib.WorkdirLock(str(tmp_path)) as again:
        assert again.held


def test_lock_without_flock_uses_the_pid(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    first = workdir_lib.WorkdirLock(str(tmp_path))
    first.acquire()
    with pytest.raises(ConfigError, match=rf"in use by pid {os.getpid()} on host"):
        workdir_lib.WorkdirLock(str(tmp_path)).acquire()
    first.release()
    # A record of a process on this host that no longer runs is stale: taken over.
    dead = _dead_pid()
    record = {"host": socket.gethostname(), "pid": dead, "started": "earlier"}
    (tmp_path / ".lock").write_text(json.dumps(record))
    with workdir_lib.WorkdirLock(str(tmp_path)):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert f"took over the stale lock of pid {dead}" in capsys.readouterr().out
    # One on another host cannot be checked: refused, saying how to clear it.
    (tmp_path / ".lock").write_text(json.dumps(dict(record, host="elsewhere")))
    with pytest.raises(ConfigError, match=r"on host elsewhere .*if it is gone, delete"):
        workdir_lib.WorkdirLock(str(tmp_path)).acquire()


# --------------------------------------------------------------------------------------
# A run killed with kill -9: stale lock, Orbax temporaries, a torn metrics line.
# --------------------------------------------------------------------------------------


def test_holder_names_a_live_run_and_ignores_a_stale_record(tmp_path, monkeypatch):
    """`holder` tells a sweep runner whether a live run holds a workdir, without taking it."""
    workdir = str(tmp_path)
    assert workdir_lib.holder(workdir) is None  # no lock file
    lock = workdir_lib.WorkdirLock(workdir)
    lock.acquire()  # a second open file of this process conflicts with it, as another's would
    held = workdir_lib.holder(workdir)
    assert held is not None and held.pid == str(os.getpid()) and held.verified
    assert held.describe() == f"pid {os.getpid()} on host {socket.gethostname()}"
    with pytest.raises(ConfigError, match="in use"):  # the probe left the lock as it was
        workdir_lib.WorkdirLock(workdir).acquire()
    lock.release()
    assert workdir_lib.holder(workdir) is None
    # A record left by a killed run: no flock on it, so nobody holds it.
    record = {"host": socket.gethostname(), "pid": _dead_pid(), "started": "then"}
    (tmp_path / ".lock").write_text(json.dumps(record))
    assert workdir_lib.holder(workdir) is None

    # Without flock the record decides: this host's pid, alive or not; another host's, on trust.
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    assert workdir_lib.holder(workdir) is None  # the dead pid
    (tmp_path / ".lock").write_text(json.dumps(dict(record, pid=os.getpid())))
    assert workdir_lib.holder(workdir).verified
    (tmp_path / ".lock").write_text(json.dumps(dict(record, host="node-7", pid=12)))
    assert workdir_lib.holder(workdir).describe() == (
        "pid 12 on host node-7; another host, taken on trust from its lock file"
    )
    assert workdir_lib.holder("gs://bucket/run") is None  # object stores have no lock


def test_killed_run_leftovers_are_cleaned_and_resume_is_exact(tmp_path, capsys, full_run):
    full, full_workdir = full_run
    part = tmp_path / "part"
    trainer.train_and_evaluate(tiny_config(), str(part), stop_after_step=17)
    # Make it look killed while writing the checkpoint of step 17, after its metric line
    # of step 15 and in the middle of one more: the checkpoint an unfinished Orbax
    # temporary, the lock still naming the dead process, the last line torn.
    ckpt_dir = part / "checkpoints"
    os.rename(ckpt_dir / "17", ckpt_dir / "17.orbax-checkpoint-tmp-1234567")
    dead = _dead_pid()
    lock = {"host": socket.gethostname(), "pid": dead, "started": "earlier"}
    (part / ".lock").write_text(json.dumps(lock) + "\n")
    line = json.dumps({"step": 20, "split": "train", "loss": 0.5}) + "\n"
    with open(part / "metrics.jsonl", "a") as f:
        f.write(line[:20])
    assert [r.get("step") for r in read_metrics_tolerant(part)] == [0, 5, 10, 15]
    capsys.readouterr()

    resumed = trainer.train_and_evaluate(tiny_config(), str(part))

    out = capsys.readouterr().out
    assert f"took over the lock of pid {dead}" in out
    assert "removed 1 incomplete checkpoint(s)" in out and "dropped 1 unreadable" in out
    assert "Resumed from" in out and "at step 10" in out
    assert resumed.step == 20 and not resumed.preempted
    assert sorted(os.listdir(ckpt_dir)) == ["10", "20"]
    assert not (part / ".lock").exists()
    jax.tree.map(np.testing.assert_array_equal, full.params, resumed.params)
    jax.tree.map(np.testing.assert_array_equal, full.params, restore_params(part, 20))
    # The file is what an uninterrupted run writes: info line once, 15 rewritten, no torn.
    assert _no_per_sec(read_metrics(part)) == _no_per_sec(read_metrics(full_workdir))


def read_metrics_tolerant(workdir):
    rows = []
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            pass
    return rows


def test_orbax_temporaries_are_removed_before_the_manager(tmp_path):
    leftover = tmp_path / "checkpoints" / "30.orbax-checkpoint-tmp-99"
    (leftover / "default").mkdir(parents=True)
    (tmp_path / "checkpoints" / "40").mkdir()  # not a temporary: kept
    assert checkpoints.remove_temporaries(str(tmp_path)) == [leftover.name]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["40"]


# --------------------------------------------------------------------------------------
# The saved config.
# --------------------------------------------------------------------------------------


def test_config_change_is_refused_unless_accepted_and_then_recorded(tmp_path, capsys):
    short = tiny_config(num_train_steps=10)
    trainer.train_and_evaluate(short, str(tmp_path))
    config_before = (tmp_path / "config.json").read_bytes()
    metrics_before = (tmp_path / "metrics.jsonl").read_bytes()
    old_lr, old_wd = short.lr.base, short.optimizer.weight_decay

    changed = tiny_config(
        num_train_steps=20, **{"lr.base": 2 * old_lr, "optimizer.weight_decay": 0.25}
    )
    with pytest.raises(ConfigError) as refused:
        trainer.train_and_evaluate(changed, str(tmp_path))
    message = str(refused.value)
    assert f"config.lr.base: {old_lr} -> {2 * old_lr}" in message
    assert f"config.optimizer.weight_decay: {old_wd} -> 0.25" in message
    assert "num_train_steps" not in message  # run length may change freely
    assert "--accept_config_changes" in message and "\n" not in message
    assert (tmp_path / "config.json").read_bytes() == config_before
    assert (tmp_path / "metrics.jsonl").read_bytes() == metrics_before
    assert not (tmp_path / run_config.CHANGES_FILE).exists()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]
    assert not (tmp_path / ".lock").exists()

    capsys.readouterr()
    result = trainer.train_and_evaluate(changed, str(tmp_path), accept_config_changes=True)
    assert result.step == 20
    assert "continuing from step 10 with config changes" in capsys.readouterr().out
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["lr"]["base"] == 2 * old_lr and saved["num_train_steps"] == 20
    [entry] = [json.loads(x) for x in (tmp_path / run_config.CHANGES_FILE).read_text().splitlines()]
    assert entry["step"] == 10 and entry["time"]
    assert entry["changes"] == {
        "config.lr.base": [old_lr, 2 * old_lr],
        "config.num_train_steps": [10, 20],
        "config.optimizer.weight_decay": [old_wd, 0.25],
    }
    assert entry["accepted_with_flag"] == ["config.lr.base", "config.optimizer.weight_decay"]


def test_config_changes_lists_every_differing_leaf():
    saved = {"model": {"num_layers": 2, "name": "a"}, "seed": 0}
    new = {"model": {"num_layers": 4, "name": "a", "extra": True}, "seed": 0}
    changes = run_config.config_changes(saved, new)
    assert run_config.format_changes(changes) == (
        "config.model.extra: (absent) -> true, config.model.num_layers: 2 -> 4"
    )


def test_fields_added_by_the_code_since_the_run_started_are_not_refused(tmp_path, capsys):
    config = tiny_config()
    run_config.write_config(config, str(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["optimizer"]["nesterov"]  # as written by an older version of the framework
    (tmp_path / "config.json").write_text(json.dumps(saved))
    run_config.check_config(config, str(tmp_path), resumed_step=10)
    assert "config.optimizer.nesterov: (absent) -> false" in capsys.readouterr().out
    entry = json.loads((tmp_path / run_config.CHANGES_FILE).read_text())
    assert entry["changes"] == {"config.optimizer.nesterov": [None, False]}
    assert entry["accepted_with_flag"] == []
    assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["nesterov"] is False


# --------------------------------------------------------------------------------------
# SIGTERM while the final checkpoint is written.
# --------------------------------------------------------------------------------------


def test_sigterm_during_final_checkpoint_waits_for_it(tmp_path, monkeypatch, capsys):
    """SIGTERM is sent to this process while the last (asynchronous) save is being waited
    for; the run's handler must still be installed then (the default one would kill
    pytest, so the signal is only sent once that is checked), and the run ends normally
    with the complete final checkpoint."""
    seen = {}
    real_close = checkpoints.Checkpointer.close

    def close_with_sigterm(self):
        handler = signal.getsignal(signal.SIGTERM)
        seen["handler_is_the_runs"] = isinstance(
            getattr(handler, "__self__", None), preemption.SigtermFlag
        )
        if seen["handler_is_the_runs"]:
            os.kill(os.getpid(), signal.SIGTERM)
        real_close(self)

    monkeypatch.setattr(checkpoints.Checkpointer, "close", close_with_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    result = trainer.train_and_evaluate(tiny_config(async_checkpointing=True), str(tmp_path))
    assert seen["handler_is_the_runs"], seen
    assert "finishing the last checkpoint" in capsys.readouterr().out
    assert result.step == 20 and not result.preempted
    assert signal.getsignal(signal.SIGTERM) is before
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "20"]
    jax.tree.map(np.testing.assert_array_equal, result.params, restore_params(tmp_path, 20))
    assert not (tmp_path / ".lock").exists()
