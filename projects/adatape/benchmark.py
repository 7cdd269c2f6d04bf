"""Train throughput of AdaTape-ViT against ViT and UViT, side by side in one process."""

from __future__ import annotations

from typing import Mapping

import ml_collections

from framework import step_timing, table_runner

MODELS = {
    "ViT-S/16": "configs/baselines/vit.py:S/16",
    "UViT-S/16 (ACT)": "configs/baselines/uvit.py:S/16",
    "AdaTape-ViT-S/16": "configs/adatape/imagenet.py:S/16",
}


def configs_at(batch_size: int, image_size: int) -> dict[str, ml_collections.ConfigDict]:
    out = {}
    for name, spec in MODELS.items():
        config = table_runner.load_config(spec)
        with config.unlocked():
            config.batch_size = batch_size
            config.eval_batch_size = batch_size
            config.dataset.image_size = image_size
        out[name] = config
    return out


def report(results: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of examples/s and ratios relative to each baseline."""
    ada = results["AdaTape-ViT-S/16"]["examples_per_sec"]
    lines = [
        "| model | parameters | ms/step | train images/s | AdaTape-ViT / model |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['num_params']:,.0f} | {1000 * r['seconds_per_step']:.1f} "
            f"| {r['examples_per_sec']:.2f} | {ada / r['examples_per_sec']:.3f} |"
        )
    return "\n".join(lines)


def run(batch_size: int = 8, image_size: int = 224, steps: int = 5, rounds: int = 3) -> str:
    results = step_timing.interleaved_step_times(configs_at(batch_size, image_size), steps, rounds)
    return report(results)
