"""`python -m launch.train` end to end: outputs, SIGTERM + resume, errors, 2 processes."""

import json
import os
import signal
import socket
import subprocess
import time

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


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def test_two_processes_match_one_process_and_a_lost_one_stops_the_other(tmp_path, capsys):
    """Two processes on localhost train as one process does. When process 1's trainer is
    killed (kill -9) after a checkpoint, process 0 stops within --lost_host_timeout with
    one line naming process 1 and exit status 3; the checkpoint is intact and a rerun
    (here on one process) resumes from it."""
    timeout = 6
    workdir = tmp_path / "multi"
    args = [
        CONFIG,
        "--config.num_train_steps=1000",  # the kill comes long before
        "--config.log_every_steps=5",
        "--config.eval_every_steps=0",
        "--config.checkpoint_every_steps=10",
        f"--workdir={workdir}",
        f"--coordinator_address=localhost:{_free_port()}",
        "--num_processes=2",
        f"--lost_host_timeout={timeout}",
    ]
    outputs = [(tmp_path / f"out{i}", tmp_path / f"err{i}") for i in range(2)]
    procs = []
    for i, (out, err) in enumerate(outputs):
        with open(out, "w") as stdout, open(err, "w") as stderr:
            procs.append(
                subprocess.Popen(
                    cli.command("launch.train", *args, f"--process_id={i}"),
                    cwd=cli.ROOT,
                    env=cli.env(1),
                    stdout=stdout,
                    stderr=stderr,
                )
            )
    try:
        deadline = time.monotonic() + 240
        while not (workdir / "checkpoints" / "10").is_dir():
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), outputs[0][
                1
            ].read_text()[-2000:]
            time.sleep(0.05)
        # Each command supervises its trainer (framework.launchers.multihost): kill that.
        (trainer_1,) = _children(procs[1].pid)
        os.kill(trainer_1, signal.SIGKILL)
        killed = time.monotonic()
        assert procs[0].wait(timeout=timeout + 60) == 3
        took = time.monotonic() - killed
        assert procs[1].wait(timeout=30) == 128 + 9
    finally:
        for p in procs:
            p.kill()
    assert took < timeout + 15
    out0, err0, err1 = (
        outputs[0][0].read_text(),
        outputs[0][1].read_text(),
        outputs[1][1].read_text(),
    )
    assert "2 process(es)" in out0
    last = max(int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit())
    errors = [line for line in err0.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: lost process 1 of 2 (host " + errors[0].split("(host ")[1].split(")")[0] + "): "
        f"no heartbeat from it for {timeout} s (--lost_host_timeout); stopped process 0 here. "
        f"The last complete checkpoint (step {last} in {workdir}/checkpoints) is intact: rerun "
        "the same command on every host to resume from it. (runtime messages: "
        f"{workdir}/logs/process_0.runtime.log)"
    ]
    assert not any(noise in err0 for noise in ("Traceback", "Check failure", "Terminating"))
    assert "process 1 of 2" in err1 and "was killed by SIGKILL" in err1

    config = parity_config.get_config("smoke")
    config.num_train_steps, config.log_every_steps = 1000, 5
    config.eval_every_steps, config.checkpoint_every_steps = 0, 10
    one_device = experiment_lib.make_mesh(jax.devices()[:1])
    capsys.readouterr()
    resumed = trainer.train_and_evaluate(
        config, str(workdir), mesh=one_device, stop_after_step=max(last + 5, 20)
    )
    assert f"at step {last}" in capsys.readouterr().out
    assert resumed.step == max(last + 5, 20)
    trainer.train_and_evaluate(
        config, str(tmp_path / "single"), mesh=one_device, stop_after_step=20
    )
    losses = lambda d: [r["loss"] for r in metrics(d) if r["split"] == "train"][:4]  # noqa
    np.testing.assert_allclose(losses(workdir), losses(tmp_path / "single"), rtol=1e-5)
