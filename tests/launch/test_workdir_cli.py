"""`python -m launch.train` on a workdir in use, and a run whose loss becomes NaN."""

import json
import os
import signal
import subprocess
import time

from tests.launch import cli

CONFIG = "--config=configs/parity/transformer.py:smoke"


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _wait_for_lock(path, proc, timeout=120.0):
    """Until `proc` holds the workdir (its lock record written), before it compiles."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the first run ended early"
        try:
            if json.loads(path.read_text())["pid"] == proc.pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError("the first run never took the lock")


def test_second_run_on_a_workdir_in_use_stops_naming_the_holder(tmp_path):
    # A long run; its schedule and the rest as in the plain smoke run, so that with the
    # suite's shared compilation cache it compiles nothing new.
    args = [
        CONFIG,
        f"--workdir={tmp_path}",
        "--config.num_train_steps=1000000",
        "--config.lr.decay_steps=60",
        "--config.compute_flops=false",
    ]
    first = subprocess.Popen(
        cli.command("launch.train", *args),
        cwd=cli.ROOT,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_for_lock(tmp_path / ".lock", first)
        second = cli.run("launch.train", *args, timeout=120)
    finally:
        first.send_signal(signal.SIGTERM)
        out = first.stdout.read()
        first.wait(timeout=120)
    assert second.returncode == 2, second.stderr[-2000:]
    assert "Traceback" not in second.stderr
    assert _error_lines(second.stderr) == [second.stderr.strip().splitlines()[-1]]
    assert (
        second.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {tmp_path} is in use by pid {first.pid} on host ")
    )
    assert "parameters" not in second.stdout  # it stopped before building the run
    # The first run was not disturbed: it stopped cleanly on SIGTERM, wrote each line once.
    assert first.returncode == 0 and "Stopped at step " in out
    with open(tmp_path / "metrics.jsonl") as f:
        keys = [(row["step"], row["split"]) for row in map(json.loads, f)]
    assert len(keys) == len(set(keys))
    assert not os.path.exists(tmp_path / ".lock")
