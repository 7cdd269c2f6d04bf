"""`python -m launch.train` end to end: outputs, SIGTERM + resume, errors, 2 processes."""

import json
import os
import signal
import socket
import subprocess

import jax
import numpy as np
import orbax.checkpoint as ocp

from configs.parity import transformer as parity_config
from framework.train import experiment as experiment_lib
from framework.train import trainer
from tests.launch import cli

CONFIG = "--config=configs/parity/transformer.py:smoke"


def metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def final_params(workdir):
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), item_handlers=ocp.StandardCheckpointHandler()
    )
    return manager.restore(manager.latest_step())["params"]


def test_sigterm_checkpoints_and_restart_matches_uninterrupted(tmp_path):
    args = [
        CONFIG,
        "--config.num_train_steps=300",
        "--config.log_every_steps=10",
        "--config.eval_every_steps=0",
        "--config.checkpoint_every_steps=1000",
    ]
    # The uninterrupted run goes on beside the interrupted one (mostly compilation,
    # which leaves the second core idle).
    straight_log = tmp_path / "straight.log"
    with open(straight_log, "w") as log:  # a file, not a pipe nobody reads meanwhile
        straight = subprocess.Popen(
            cli.command("launch.train", *args, f"--workdir={tmp_path / 'straight'}"),
            cwd=cli.ROOT,
            env=cli.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(
        cli.command("launch.train", *args, f"--workdir={interrupted}"),
        cwd=cli.ROOT,
        env=cli.env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("step 50/"):
            proc.send_signal(signal.SIGTERM)
            break
    out = proc.stdout.read()
    assert proc.wait(timeout=120) == 0
    assert "Stopped at step" in out
    stopped = int(out.split("Stopped at step ")[1].split()[0])
    assert 50 <= stopped < 300
    assert os.listdir(interrupted / "checkpoints") == [str(stopped)]

    assert straight.wait(timeout=120) == 0, straight_log.read_text()[-2000:]
    straight_out = straight_log.read_text()
    # What a run leaves: progress lines, events, metrics, the final checkpoint.
    assert "steps/s | ETA" in straight_out
    assert "parameters" in straight_out and "MFLOPs/example" in straight_out
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "straight"))
    rows = metrics(tmp_path / "straight")
    train = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(10, 301, 10))
    assert [r["step"] for r in rows if r["split"] == "eval"] == [300]
    assert {"loss", "accuracy", "learning_rate", "grad_norm"} <= set(train[0])
    assert os.listdir(tmp_path / "straight" / "checkpoints") == ["300"]

    resumed = cli.run("launch.train", *args, f"--workdir={interrupted}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resumed from" in resumed.stdout
    jax.tree.map(
        np.testing.assert_array_equal,
        final_params(tmp_path / "straight"),
        final_params(interrupted),
    )
    drop = lambda rows: [
        {k: v for k, v in r.items() if not k.endswith("_per_sec")}  # noqa
        for r in rows
        if r["split"] != "info"
    ]
    assert drop(metrics(tmp_path / "straight")) == drop(metrics(interrupted))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
    args = [
        CONFIG,
        "--config.num_train_steps=20",
        "--config.log_every_steps=5",
        "--config.eval_every_steps=0",
        f"--workdir={tmp_path / 'multi'}",
        f"--coordinator_address=localhost:{_free_port()}",
        "--num_processes=2",
    ]
    procs = [
        subprocess.Popen(
            cli.command("launch.train", *args, f"--process_id={i}"),
            cwd=cli.ROOT,
            env=cli.env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:]
    assert "2 process(es)" in outs[0][0]

    config = parity_config.get_config("smoke")
    config.num_train_steps, config.log_every_steps, config.eval_every_steps = 20, 5, 0
    trainer.train_and_evaluate(
        config, str(tmp_path / "single"), mesh=experiment_lib.make_mesh(jax.devices()[:1])
    )
    losses = lambda d: [r["loss"] for r in metrics(d) if r["split"] == "train"]  # noqa
    np.testing.assert_allclose(losses(tmp_path / "multi"), losses(tmp_path / "single"), rtol=1e-5)
