"""The `images` table: AdaTape against ViT and the adaptive-depth ViTs on Fashion-MNIST.

Rows (`configs/images/fashion_mnist.py`): ViT, AdaTape with the input-driven bank,
AdaTape with a learnable bank, UViT (per-example ACT), U2T (per-token ACT) and A-ViT,
at one budget (steps, batch, optimizer, augmentation), 3 seeds. After training, the
`extra` step restores each row's seed-0 checkpoint and times its train step and its
eval step side by side in this process, the rows taking turns over rounds (so the
speeds are comparable; the trained halting decides how much an adaptive model
computes). It then writes `accuracy_vs_speed.png` (accuracy against eval images/s,
error bars over seeds: the paper's figure) and `selection_heatmap.png` (how often ATR
reads each patch of the input-driven bank over the test split: the blog's figure).

Fashion-MNIST is prepared on first use (`framework.data.image_prepare.fashion_mnist`,
from Debian's package, into tfds' data dir). Presets: `tiny` (a few steps, one seed:
tests the command), `quick` (400 steps of batch 128, 3 seeds; under 20 minutes on 2 CPU
cores), `full` (the config's 3000 steps, 3 seeds).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from typing import Any

import ml_collections

from framework.config import loader, registry
from framework.data.image_prepare import fashion_mnist
from framework.experiments import run_budget, step_timing, tables
from framework.train import metric_writing
from projects.adatape import image_plots

CONFIG = "configs/images/fashion_mnist.py"
ROWS = {
    "ViT": "vit",
    "AdaTape (input-driven bank)": "adatape_input",
    "AdaTape (learnable bank)": "adatape_learn",
    "UViT (per-example ACT)": "uvit",
    "U2T (per-token ACT)": "u2t",
    "A-ViT": "avit",
}
HEATMAP_ROW = "AdaTape (input-driven bank)"
SPEED_FILE = "speed.json"


@dataclasses.dataclass(frozen=True)
class Preset:
    tiny: bool
    seeds: tuple[int, ...]
    steps: int  # 0: the config's own
    timing_steps: int  # steps per round of the side-by-side timing
    timing_rounds: int


PRESETS = {
    "tiny": Preset(True, (0,), 0, 1, 1),
    "quick": Preset(False, (0, 1, 2), 400, 10, 3),
    "full": Preset(False, (0, 1, 2), 0, 10, 5),
}

NOTES = """
Fashion-MNIST (60k train / 10k test, 28x28 grey), every model from scratch with the same
steps, batch, AdamW schedule and augmentation (flip), ViT-micro widths (64 wide, 4 blocks,
7x7 patches). Accuracy: top-1 on the whole test split, mean ± std over seeds. Speeds:
seed 0's trained model, train step (forward + backward + update) and eval step, timed
side by side in one process after training (images/s, this machine). FLOPs: XLA's
estimate of one example's forward pass (for ACT, A-ViT and ATR the estimate counts every
possible step, not the steps taken). Tape length: tape tokens read per example; ACT
steps: shared-block applications per example (U2T: per token); A-ViT depth: blocks per
token. Paper's claim (AdaTape, ImageNet): AdaTape gives a better accuracy/cost trade-off
than the adaptive-depth baselines (UViT, U2T, A-ViT) and at least ViT's accuracy at
comparable cost.
"""


def _row_config(preset: Preset, model: str) -> ml_collections.ConfigDict:
    config = loader.load_config(f"{CONFIG}:{model},tiny" if preset.tiny else f"{CONFIG}:{model}")
    if preset.steps:
        config = run_budget.RunBudget(preset.steps).apply(config)
    with config.unlocked():
        config.compute_flops = True
    return config


def _seed_dir(workdir: str, row: tables.Row) -> str:
    return os.path.join(workdir, row.slug, f"seed_{row.seeds[0]}")


def speed_extra(preset: Preset):
    """The table's `extra`: side-by-side train and eval images/s, then the pictures."""

    def extra(table: tables.Table, workdir: str) -> dict[str, dict[str, float]]:
        key = {
            "configs": {row.name: row.config.to_dict() for row in table.rows},
            "steps": preset.timing_steps,
            "rounds": preset.timing_rounds,
        }
        speeds = tables.cached_extra(
            workdir, SPEED_FILE, key, lambda: measure_speeds(table, workdir, preset)
        )
        heatmap_row = next(r for r in table.rows if r.name == HEATMAP_ROW)
        image_plots.selection_heatmap(heatmap_row.config, _seed_dir(workdir, heatmap_row), workdir)
        return speeds

    return extra


def measure_speeds(
    table: tables.Table, workdir: str, preset: Preset
) -> dict[str, dict[str, float]]:
    """Train and eval images/s of every row's trained seed-0 model, interleaved."""
    train_loops, eval_loops = {}, {}
    for row in table.rows:
        trained = _seed_dir(workdir, row)
        train_loops[row.name] = step_timing.bare_loop(row.config, trained)
        eval_loops[row.name] = step_timing.bare_eval_loop(row.config, trained)
    steps, rounds = preset.timing_steps, preset.timing_rounds
    train = step_timing.interleaved_seconds(train_loops, steps, rounds)
    evals = step_timing.interleaved_seconds(eval_loops, steps, rounds)
    out = {}
    for row in table.rows:
        train_rate = train_loops[row.name].batch_size / statistics.median(train[row.name])
        eval_rate = eval_loops[row.name].batch_size / statistics.median(evals[row.name])
        out[row.name] = {"train_images_per_sec": train_rate, "eval_images_per_sec": eval_rate}
        metric_writing.log(
            f"{row.name}: train {train_rate:,.0f} images/s, eval {eval_rate:,.0f} images/s"
        )
    return out


def report(table: tables.Table, summary: dict[str, Any], workdir: str) -> None:
    """Writes the accuracy-against-speed picture from the table's summary."""
    image_plots.accuracy_vs_speed(table.title, summary, workdir)


@registry.TABLES.register("images")
def images_table(preset_name: str) -> tables.Table:
    preset = tables.pick_preset("images", PRESETS, preset_name)
    fashion_mnist.prepare_fashion_mnist()  # on first use; a no-op once prepared
    rows = [
        tables.Row(name, _row_config(preset, model), preset.seeds) for name, model in ROWS.items()
    ]
    columns = [
        tables.Column("eval.accuracy", "top-1 accuracy"),
        tables.Column("train_images_per_sec", "train images/s", "{:,.0f}", spread=False),
        tables.Column("eval_images_per_sec", "eval images/s", "{:,.0f}", spread=False),
        tables.Column("flops_per_example", "forward MFLOPs", "{:,.2f}", spread=False, scale=1e-6),
        tables.Column("num_params", "parameters", "{:,.0f}", spread=False),
        tables.Column("eval.tape_length", "tape length", "{:.2f}"),
        tables.Column("eval.act_updates", "ACT steps", "{:.2f}"),
        tables.Column("eval.avit_depth", "A-ViT depth", "{:.2f}"),
    ]
    first = rows[0].config
    title = (
        f"Fashion-MNIST, {preset_name} preset ({len(preset.seeds)} seed(s), "
        f"{first.num_train_steps} steps of batch {first.batch_size})"
    )
    return tables.Table(title, rows, columns, NOTES, extra=speed_extra(preset), report=report)
