"""Metric writing: TensorBoard (clu), `metrics.jsonl`, and progress lines with ETA.

The workdir may be remote (`gs://bucket/path`): `metrics.jsonl` goes through `etils.epath`
and the TensorBoard events through `tf.summary`, both of which serve `gs://`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

import jax
import numpy as np
from absl import logging
from etils import epath

from framework.train import disk_full

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
    """Writes scalars to TensorBoard and `metrics.jsonl` (process 0 only).

    `metrics.jsonl` holds one JSON object per logged step and split:
    `{"step": 100, "split": "train", "loss": 0.69, ...}`. `resumed_step` is the checkpoint
    step a resumed run starts from (0: a fresh run), whose later lines are dropped; None
    appends to the file as it is (e.g. `launch.evaluate`). TensorBoard events go to
    `tensorboard_dir` (default: the workdir).
    """

    def __init__(
        self, workdir: str, resumed_step: int | None = 0, tensorboard_dir: str | None = None
    ):
        self.enabled = jax.process_index() == 0
        self.path = epath.Path(workdir) / METRICS_FILE
        if not self.enabled:
            return
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
        if resumed_step is not None:
            self._drop_lines_after(resumed_step)
        # Imported here: clu's summary writer loads TensorFlow (seconds), which a run that
        # stops on a config or data error before writing anything should not wait for.
        from clu import metric_writers

        self.tensorboard_dir = tensorboard_dir or workdir
        self.tensorboard = metric_writers.AsyncWriter(
            metric_writers.SummaryWriter(self.tensorboard_dir)
        )

    def _drop_lines_after(self, step: int) -> None:
        """Makes the file what an uninterrupted run has written up to `step`.

        A resumed run rewrites the steps after its checkpoint, so lines past `step` go (all
        of them for a fresh start, `step` 0), and so does a line torn by a crash mid-write.
        The file is rewritten whole (a temporary file renamed over it), never truncated.
        """
        if not self.path.exists():
            return
        kept, torn = [], 0
        with self.path.open("r") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row_step = json.loads(line)["step"]
                    keep = step > 0 and row_step <= step
                except (ValueError, KeyError, TypeError):
                    torn += 1
                    continue
                if keep:
                    kept.append(line if line.endswith("\n") else line + "\n")
        if torn:
            log(f"note: dropped {torn} unreadable (torn) line(s) from {self.path}")
        tmp = self.path.with_name(f"{METRICS_FILE}.tmp-{os.getpid()}")
        try:
            with disk_full.raising(str(tmp)):
                tmp.write_text("".join(kept))  # (gfile's files have no `writelines`)
        except BaseException:
            tmp.unlink(missing_ok=True)  # the file itself is as it was
            raise
        tmp.replace(self.path)

    def write(
        self,
        step: int,
        split: str,
        scalars: Mapping[str, float],
        histograms: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        # A full disk is a `DiskFullError` naming the file; the lines before are intact
        # (a line torn by it is dropped when the run resumes).
        with disk_full.raising(f"TensorBoard events in {self.tensorboard_dir}"):
            self.tensorboard.write_scalars(step, {f"{split}/{k}": v for k, v in scalars.items()})
            if histograms:
                self.tensorboard.write_histograms(
                    step, {f"{split}/{k}": np.asarray(v) for k, v in histograms.items()}
                )
        # One line per write, the file closed after it: on GCS an append re-uploads the
        # object on close, so a line is in the bucket once `write` returns.
        with disk_full.raising(str(self.path)), self.path.open("a") as f:
            f.write(json.dumps({"step": step, "split": split, **scalars}) + "\n")

    def close(self) -> None:
        if self.enabled:
            with disk_full.raising(f"TensorBoard events in {self.tensorboard_dir}"):
                self.tensorboard.flush()
                self.tensorboard.close()


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bytes(n: float) -> str:
    """`1.5 MiB`: a byte count in binary units."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


class Progress:
    """Measures steps/s between log points and prints `step | metrics | steps/s | ETA`."""

    def __init__(self, total_steps: int, start_step: int):
        self.total_steps = total_steps
        self.last_step = start_step
        self.last_time = time.perf_counter()
        self.paused = 0.0

    def pause(self, seconds: float) -> None:
        """Excludes time spent outside training steps (eval, checkpoints) from steps/s."""
        self.paused += seconds

    def update(self, step: int) -> float:
        now = time.perf_counter()
        elapsed = max(now - self.last_time - self.paused, 1e-9)
        rate = (step - self.last_step) / elapsed
        self.last_step, self.last_time, self.paused = step, now, 0.0
        return rate

    def line(
        self, step: int, rate: float, scalars: Mapping[str, float], mfu: float | None = None
    ) -> str:
        shown = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
        eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
        eta_text = format_duration(eta) if np.isfinite(eta) else "?"
        pct = 100.0 * step / self.total_steps
        utilisation = f" | MFU {100 * mfu:.1f}%" if mfu is not None else ""
        return (
            f"step {step}/{self.total_steps} ({pct:.0f}%) | {shown} | "
            f"{rate:.2f} steps/s{utilisation} | ETA {eta_text}"
        )


def log(message: str) -> None:
    if jax.process_index() == 0:
        logging.info(message)
        print(message, flush=True)
