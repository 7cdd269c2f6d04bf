"""Evaluation by decoding: decode a text task's eval split, score it, keep the decodes.

Used by the trainer at every evaluation when `config.decode.at_eval` is set, and by
`launch.evaluate`. The dataset must be a text-task dataset: `eval_batches()` aligned
with `eval_examples()`, a `vocab` to turn tokens into text, and `score(texts)` giving
the task metrics (`framework/data/text/task_dataset.py`). Decoding is greedy or beam
search with a key/value cache (`framework/models/decoding.py`).
"""

from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections
from etils import epath
from jax.sharding import Mesh

from framework.data import pipeline
from framework.errors import ConfigError
from framework.models import base
from framework.models.t5 import decoding

DECODES_DIR = "decodes"


def check_dataset(dataset: pipeline.DatasetBuilder) -> None:
    """A one-line error unless `dataset` can be evaluated by decoding."""
    missing = [a for a in ("eval_examples", "score", "vocab") if not hasattr(dataset, a)]
    if missing:
        raise ConfigError(
            f"config.decode.at_eval needs a text-task dataset (e.g. text_task); "
            f"{type(dataset).__name__} has no {', '.join(missing)}"
        )


def decode_texts(
    model: base.BaseModel,
    params: Any,
    dataset: Any,
    settings: ml_collections.ConfigDict,
    mesh: Mesh,
) -> list[str]:
    """The decoded text of every eval example, in `eval_examples()` order.

    Each eval batch is sharded over the mesh's `data` axis as in the eval step (every
    process feeds its rows; the global batch holds them in process order), so the
    devices decode their own rows; the tokens come back whole to every process.
    """
    max_length = settings.max_length or dataset.config.targets_length
    texts: list[str] = []
    total = len(dataset.eval_examples())
    for batch in dataset.eval_batches():
        tokens = decoding.decode_batch(
            model,
            params,
            pipeline.shard_batch(batch, mesh),
            max_length,
            method=settings.method,
            beam_size=settings.beam_size,
            alpha=settings.alpha,
        )
        for row in tokens:
            if len(texts) < total:  # padding rows of the last batch come last
                texts.append(dataset.vocab.decode(row))
    return texts


def write_decodes(
    workdir: str, step: int, examples: list[dict], texts: list[str], suffix: str = ""
) -> list[str]:
    """`WORKDIR/decodes/<task>/<step><suffix>.jsonl`, one line per example; returns the
    paths."""
    by_task: dict[str, list[str]] = {}
    for example, text in zip(examples, texts):
        line = {"inputs": example["inputs"], "targets": example["targets"], "prediction": text}
        by_task.setdefault(example["task"], []).append(json.dumps(line))
    paths = []
    for task, lines in by_task.items():
        directory = epath.Path(workdir) / DECODES_DIR / task.replace("/", "_")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{step}{suffix}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        paths.append(str(path))
    return paths


def evaluate(
    model: base.BaseModel,
    params: Any,
    dataset: Any,
    settings: ml_collections.ConfigDict,
    workdir: str,
    step: int,
    mesh: Mesh,
    suffix: str = "",
) -> dict[str, float]:
    """Decodes and scores the eval split; writes the decodes (process 0; `suffix` as in
    `write_decodes`). Returns the task metrics, e.g. {"polarity/accuracy": 85.0}."""
    check_dataset(dataset)
    texts = decode_texts(model, params, dataset, settings, mesh)
    if jax.process_index() == 0:
        write_decodes(workdir, step, dataset.eval_examples(), texts, suffix)
    return {k: float(v) for k, v in dataset.score(texts).items()}
