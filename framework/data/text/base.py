"""`TextBuilder`: what the T5 text builders share (span corruption, text-to-text tasks).

The vocabulary fields and their checks (a SentencePiece `vocab_path` with `extra_ids`
sentinels, the model's `inputs_length` / `targets_length`), the `vocab`, the eval-batch
loop (global row r of eval batch b holds items b * size + r * per_row ... of the eval
split, rows past the end are padding with `mask` 0, and a process builds only its
`HostSplit.local_slice` of each global batch) and the `meta` keys every T5 model reads.
A subclass reads its own data and says how its eval items become examples.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator, Mapping, Sequence

import ml_collections

from framework.config import fields
from framework.data import pipeline
from framework.data.text import features, sources, vocabulary
from framework.data.text.vocabulary import Vocabulary
from framework.errors import ConfigError

# Where a vocabulary comes from, for the errors about a missing one: T5's public
# vocabulary (what C4 runs and converted T5 checkpoints use), or one trained on a corpus.
T5_VOCAB = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
T5_VOCAB_HINT = (
    f"T5's public 32k vocabulary is {T5_VOCAB} (give that path, or a local copy), also the "
    "spiece.model of any Hugging Face T5 checkpoint, which `python -m launch.convert hf_t5 "
    "--input=DIR --workdir=OUT` copies to OUT/spm.model"
)
CORPUS_VOCAB_HINT = (
    "train one on a corpus with `python -m launch.prepare_data vocab --input=FILES "
    "--output=DIR/spm.model` (`prepare_data english_mix` writes data/english_mix/spm.model)"
)


class TextBuilder(pipeline.DatasetBuilder):
    """A T5 batch builder over a SentencePiece vocabulary (see the module docstring).

    Subclasses define `VOCAB_HINT` (where to get the missing .model file),
    `examples_per_row`, `num_eval_examples()`, `train_batches` and `eval_batches`, and
    may add `_check_sources()` (run before the vocabulary is checked), `_check_vocab`
    and `_meta()`.
    """

    VOCAB_HINT = f"{T5_VOCAB_HINT}; or {CORPUS_VOCAB_HINT}"

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.vocab_path = ""  # a SentencePiece .model (pad 0, eos 1 as in T5)
        c.extra_ids = 100  # sentinels on top of the SentencePiece pieces
        c.inputs_length = 512
        c.targets_length = 114
        c.pack = False  # rows hold several whole examples (segment ids, positions)
        c.num_eval_examples = 0  # first examples of the eval data; 0: all
        return c

    @classmethod
    def check_config(cls, c: ml_collections.ConfigDict) -> None:
        for key in ("inputs_length", "targets_length"):
            fields.check_positive(f"config.dataset.{key}", c[key])
        for key in ("extra_ids", "num_eval_examples"):
            if c[key] < 0:
                raise ConfigError(f"config.dataset.{key} must be >= 0, got {c[key]}")

    def __init__(self, config: ml_collections.ConfigDict, split: pipeline.HostSplit, seed: int):
        super().__init__(config, split, seed)  # checks the values
        self._check_sources()
        if not config.vocab_path:
            raise ConfigError(
                "config.dataset.vocab_path must name a SentencePiece .model file; "
                f"{self.VOCAB_HINT}"
            )
        if not sources.path_exists(config.vocab_path):
            raise ConfigError(
                f"config.dataset.vocab_path={config.vocab_path!r} does not exist; {self.VOCAB_HINT}"
            )

    def _check_sources(self) -> None:
        """Raises ConfigError when the data's location is not set or not there."""

    # ---------------------------------------------------------------- vocabulary and meta

    @functools.cached_property
    def vocab(self) -> Vocabulary:
        vocab = vocabulary.load_for_batches(self.config.vocab_path, self.config.extra_ids)
        self._check_vocab(vocab)
        return vocab

    def _check_vocab(self, vocab: Vocabulary) -> None:
        """Raises ConfigError when the vocabulary does not suit the data (e.g. sentinels)."""

    @property
    def examples_per_row(self) -> int:
        raise NotImplementedError

    def num_eval_examples(self, split: str | None = None) -> int:
        """How many examples an eval split (None: the configured one) holds."""
        raise NotImplementedError

    def _meta(self) -> dict[str, Any]:
        """The builder's own `meta` entries."""
        return {}

    @property
    def meta(self) -> Mapping[str, Any]:
        c = self.config
        return {
            "vocab_size": self.vocab.vocab_size,
            "num_eval_examples": self.num_eval_examples(),
            "inputs_length": c.inputs_length,
            "targets_length": c.targets_length,
            "examples_per_row": self.examples_per_row,
            "eos_id": self.vocab.eos_id,
            "pad_id": 0,
            **self._meta(),
        }

    # ---------------------------------------------------------------- eval batches

    def _eval_batches_of(
        self,
        count: int,
        examples_of: Callable[[Sequence[int]], list[features.Example]],
        per_row: int = 1,
        packed: bool = False,
    ) -> Iterator[pipeline.Batch]:
        """Eval batches over items 0 .. count - 1, `per_row` consecutive items per row;
        `examples_of(ids)` gives the examples of this process's items, in order."""
        c, size = self.config, self.split.global_eval_batch_size
        rows = range(size)[self.split.local_slice(size)]
        for first in range(0, count, size * per_row):
            row_ids = [
                range(first + r * per_row, min(first + (r + 1) * per_row, count)) for r in rows
            ]
            row_ids = [ids for ids in row_ids if ids]
            examples = iter(examples_of([i for ids in row_ids for i in ids]))
            batch_rows = [[next(examples) for _ in ids] for ids in row_ids]
            batch = features.make_batch(batch_rows, c.inputs_length, c.targets_length, packed)
            yield pipeline.pad_batch(batch, len(rows))
