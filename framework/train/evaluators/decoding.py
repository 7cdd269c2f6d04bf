"""The `decoding` evaluator: decode a text task's split, score it, keep the decodes.

The dataset must be a text-task dataset: `eval_batches()` aligned with `eval_examples()`,
a `vocab` to turn tokens into text, and `score(texts)` giving the task metrics, e.g.
`polarity/accuracy` (`framework/data/text/task_dataset.py`); each takes `split=` for an
entry on another split. Decoding is greedy or beam search with a key/value cache
(`framework/models/t5/decoding.py`), sharded over the mesh as the eval step is.

Decodes go to `WORKDIR/decodes/<task>/<step>[.<name>][<suffix>].jsonl`: `.<name>` for an
entry on another split, `<suffix>` from the run's evaluator context (`.evaluate` for
`launch.evaluate`, beside, not over, the training run's own).
"""

from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections
from etils import epath
from jax.sharding import Mesh

from framework.config import registry
from framework.data import pipeline
from framework.errors import ConfigError
from framework.models import base as models_base
from framework.models.t5 import decoding as t5_decoding
from framework.train.evaluators import base

DECODES_DIR = "decodes"
METHODS = ("greedy", "beam")


def decode_texts(
    model: models_base.BaseModel,
    params: Any,
    dataset: Any,
    settings: ml_collections.ConfigDict,
    mesh: Mesh,
    split: str = "",
) -> list[str]:
    """The decoded text of every example of `split` ("" = the eval split), in
    `eval_examples()` order.

    Each batch is sharded over the mesh's `data` axis as in the eval step (every process
    feeds its rows; the global batch holds them in process order), so the devices
    decode their own rows; the tokens come back whole to every process.
    """
    kwargs = {"split": split} if split else {}
    max_length = settings.max_length or dataset.config.targets_length
    texts: list[str] = []
    total = len(dataset.eval_examples(**kwargs))
    for batch in dataset.eval_batches(**kwargs):
        tokens = t5_decoding.decode_batch(
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


@registry.EVALUATORS.register("decoding")
class Decoding(base.Evaluator):
    """Decodes this entry's split, scores it with the task's metrics, writes the decodes."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.method = "greedy"  # greedy | beam
        c.beam_size = 4
        c.alpha = 0.6  # beam length penalty: score / ((5 + length) / 6) ** alpha
        c.max_length = 0  # 0: the dataset's targets_length
        return c

    @classmethod
    def check_config(cls, config: ml_collections.ConfigDict, where: str) -> None:
        if config.method not in METHODS:
            raise ConfigError(
                f"{where}.method must be {' or '.join(METHODS)}, got {config.method!r}"
            )
        for key, least in (("beam_size", 1), ("max_length", 0)):
            if config[key] < least:
                raise ConfigError(f"{where}.{key} is out of range: {config[key]}")

    def __init__(self, name: str, config: ml_collections.ConfigDict, context: base.Context):
        super().__init__(name, config, context)
        base.require(
            self.dataset,
            ("eval_examples", "score", "vocab"),
            f"{self.where}.type={config.type!r}",
            "a text-task dataset (e.g. text_task)",
        )

    def evaluate(self, params: Any, step: int) -> base.Result:
        """Decodes and scores the split; process 0 writes the decodes."""
        experiment, kwargs = self.context.experiment, self.split_kwargs()
        texts = decode_texts(
            experiment.model, params, self.dataset, self.config, experiment.mesh, self.config.split
        )
        if jax.process_index() == 0:
            suffix = (f".{self.name}" if self.prefix else "") + self.context.suffix
            examples = self.dataset.eval_examples(**kwargs)
            write_decodes(self.context.workdir, step, examples, texts, suffix)
        scores = self.dataset.score(texts, **kwargs)
        return base.Result({k: float(v) for k, v in scores.items()})
