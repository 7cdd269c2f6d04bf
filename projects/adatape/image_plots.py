"""The `images` table's pictures: accuracy against speed, and where ATR reads.

`accuracy_vs_speed`: one marker per model, eval images/s against top-1 accuracy with
error bars over seeds (AdaTape's paper figure). `selection_heatmap`: the fraction of
test images for which ATR reads each patch of the input-driven bank, on the patch grid
(the AdaTape blog's figure). Files go through `etils.epath`: the workdir may be remote
(`gs://bucket/path`), which matplotlib and numpy cannot write to by name.
"""

from __future__ import annotations

import io
import os
from typing import Any

import matplotlib
import ml_collections
import numpy as np
from etils import epath

from framework.config import schema
from framework.train import checkpoints, evaluators
from framework.train import experiment as experiment_lib

matplotlib.use("Agg")  # files only; no display
import matplotlib.pyplot as plt  # noqa: E402

ACCURACY_VS_SPEED = "accuracy_vs_speed.png"
SELECTION_HEATMAP = "selection_heatmap.png"


def _save_figure(fig: Any, path: str) -> None:
    """Writes `fig` as a PNG to `path` (local or remote), then closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    epath.Path(path).write_bytes(buffer.getvalue())


def accuracy_vs_speed(title: str, summary: dict[str, Any], workdir: str) -> str:
    """Writes `workdir/accuracy_vs_speed.png`; returns its path."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, entry in summary.items():
        accuracy, speed = entry.get("eval.accuracy"), entry.get("eval_images_per_sec")
        if accuracy is None or speed is None:
            continue
        ax.errorbar(
            speed["mean"], accuracy["mean"], yerr=accuracy["std"], fmt="o", capsize=4, label=name
        )
    ax.set_xlabel("eval images/s (this machine, seed 0's trained model)")
    ax.set_ylabel("top-1 accuracy (mean ± std over seeds)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = os.path.join(workdir, ACCURACY_VS_SPEED)
    _save_figure(fig, path)
    return path


def selection_counts(config: ml_collections.ConfigDict, trained_dir: str) -> tuple[np.ndarray, int]:
    """(reads per bank entry over the eval split, number of eval images) for the
    checkpoint in `trained_dir`; each image counts an entry at most once (the
    `tape_selection` evaluator, `projects/adatape/evaluators.py`)."""
    experiment = experiment_lib.build_experiment(config)
    params = checkpoints.restore_state(trained_dir, experiment.abstract_state)[0].params
    entry = schema.eval_entry("tape_selection", "config.evals.selection")
    selection = evaluators.build("selection", entry, evaluators.Context(experiment, trained_dir))
    return selection.counts(params)


def selection_heatmap(config: ml_collections.ConfigDict, trained_dir: str, workdir: str) -> str:
    """Writes `workdir/selection_heatmap.png` for an input-driven bank; returns its path."""
    counts, images = selection_counts(config, trained_dir)
    side = int(round(np.sqrt(len(counts))))
    if side * side != len(counts):
        raise ValueError(f"a bank of {len(counts)} entries is not a square grid of patches")
    frequency = (counts / max(images, 1)).reshape(side, side)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    shown = ax.imshow(frequency, cmap="viridis", vmin=0.0)
    fig.colorbar(shown, ax=ax, label="fraction of test images reading the patch")
    ax.set_title(f"ATR reads per bank patch ({side}x{side} grid, {images:,} images)", fontsize=9)
    ax.set_xlabel("patch column")
    ax.set_ylabel("patch row")
    fig.tight_layout()
    path = os.path.join(workdir, SELECTION_HEATMAP)
    _save_figure(fig, path)
    buffer = io.BytesIO()
    np.save(buffer, frequency)
    epath.Path(os.path.join(workdir, "selection_frequency.npy")).write_bytes(buffer.getvalue())
    return path
