"""The `span_corruption` dataset: T5 pre-training batches from text files or tfds C4.

Each example is a chunk of `raw_length` tokens of the concatenated token stream,
corrupted as in T5 (`span_corruption`); `raw_length` (0: computed) is the largest
chunk length whose corrupted inputs and targets fit `inputs_length` and
`targets_length`, so nothing is truncated. Every example's randomness comes from
its own `np.random.default_rng` key, so examples do not depend on batching or on how
many processes there are.

- `text_files`: the train files' chunks are held in memory; global training example
  e is chunk perm_epoch[e mod N] (a seeded permutation per epoch, `pipeline.EpochOrder`)
  corrupted with key (seed, e), so train batches are a function of (seed, step) and
  each process builds only its rows of the global batch. Eval: the first
  `num_eval_examples` chunks of the eval files (0: all; split `eval`, or `train` for the
  train files), corrupted with a fixed key independent of the run's seed.
- `tfds` (`c4/en`): each process streams its share of the train split
  (`tfds.split_for_jax_process`), shuffled with a seed derived from (seed,
  start_step). A run is reproducible from (seed, start_step); a resumed run starts a
  fresh, seeded order rather than replaying the stream up to the step, which on C4
  would mean re-reading everything seen so far. Eval: the first `num_eval_examples`
  chunks of the eval split (`tfds_eval_split`, or any split named to `eval_batches`) in
  stored order, read by every process.
Eval batches are padded to the eval batch size with `mask` 0, and every process
yields the same number of them; `meta['num_eval_examples']` counts the held-out
examples actually found (so `meta` reads the eval data once).

Packing (`pack`): rows hold `examples_per_row` whole examples with segment ids and
positions (see `features`). With the computed raw length every corrupted example fills
its row already, so packing only pays with a shorter `raw_length`; a model must then
use the segment ids to keep examples apart.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, Iterator, Sequence

import ml_collections
import numpy as np

from framework.config import fields, registry
from framework.data import pipeline
from framework.data.text import base, features, sources, span_corruption
from framework.data.text.vocabulary import Vocabulary
from framework.errors import ConfigError

_TRAIN, _EVAL, _PERMUTATION = 0, 1, 2
SOURCES = ("text_files", "tfds")
TEXT_FILE_SPLITS = ("eval", "train")  # eval_files, train_files
PREPARE_TEXT = "`python -m launch.prepare_data shakespeare --out_dir=DIR`"
_EVAL_SEED = 0  # the held-out set is the same for every run


@registry.DATASETS.register("span_corruption")
class SpanCorruption(base.TextBuilder):
    """T5 span-corruption batches (see the module docstring)."""

    VOCAB_HINT = (
        f"{base.T5_VOCAB_HINT}; or use the spm.model that {PREPARE_TEXT} writes beside its "
        f"text, or {base.CORPUS_VOCAB_HINT}"
    )

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = super().default_config()  # vocab_path, extra_ids, lengths, pack, ...
        c.source = "text_files"  # text_files | tfds
        c.train_files = ""  # comma-separated globs (text_files)
        c.eval_files = ""
        c.documents = "lines"  # lines | paragraphs: one document per line / paragraph
        c.tfds_name = "c4/en:3.1.0"
        c.tfds_train_split = "train"
        c.tfds_eval_split = "validation"
        c.data_dir = ""  # tfds data dir ('' : tfds' default)
        c.shuffle_buffer_size = 10_000  # documents (tfds)
        c.raw_length = 0  # chunk length; 0: the largest that fits both lengths
        c.noise_density = 0.15
        c.mean_noise_span_length = 3.0
        c.num_eval_examples = 8192  # first chunks of the eval data; 0: all
        return c

    @classmethod
    def check_config(cls, c: ml_collections.ConfigDict) -> None:
        fields.check_one_of("config.dataset.source", c.source, SOURCES)
        fields.check_one_of("config.dataset.documents", c.documents, sources.DOCUMENTS)
        if not 0.0 < c.noise_density < 1.0:
            raise ConfigError(
                f"config.dataset.noise_density must lie in (0, 1), got {c.noise_density}"
            )
        fields.check_positive("config.dataset.mean_noise_span_length", c.mean_noise_span_length)
        super().check_config(c)
        if c.source == "tfds":
            fields.check_positive("config.dataset.shuffle_buffer_size", c.shuffle_buffer_size)
        if c.raw_length < 0:
            raise ConfigError(f"config.dataset.raw_length must be >= 0, got {c.raw_length}")

    def __init__(self, config: ml_collections.ConfigDict, split: pipeline.HostSplit, seed: int):
        super().__init__(config, split, seed)  # checks the values, data and vocabulary
        self._eval_chunks: dict[str, np.ndarray] = {}

    def _check_sources(self) -> None:
        # Where the data is: a config may leave it to the command line (C4's vocabulary).
        c = self.config
        if c.source != "text_files":
            return
        if not (c.train_files and c.eval_files):
            raise ConfigError(
                "config.dataset.train_files and config.dataset.eval_files must be set "
                f"(text files, e.g. from {PREPARE_TEXT})"
            )
        for key in ("train_files", "eval_files"):
            if not sources.matching_files(c[key]):
                raise ConfigError(
                    f"config.dataset.{key}={c[key]!r}: no text files match; make them "
                    f"with {PREPARE_TEXT} (DIR/train.txt, DIR/eval.txt, DIR/spm.model) "
                    "or name your own (comma-separated globs)"
                )

    # ---------------------------------------------------------------- shapes and vocabulary

    def _check_vocab(self, vocab: Vocabulary) -> None:
        _, spans = span_corruption.noise_counts(self.raw_length, *self._noise)
        if spans > vocab.extra_ids:
            raise ConfigError(f"{spans} noise spans need {spans} sentinels; extra_ids is fewer")

    @property
    def _noise(self) -> tuple[float, float]:
        return self.config.noise_density, self.config.mean_noise_span_length

    @functools.cached_property
    def raw_length(self) -> int:
        c = self.config
        try:
            fit = span_corruption.raw_length(c.inputs_length, c.targets_length, *self._noise)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if c.raw_length > fit:
            raise ConfigError(
                f"dataset.raw_length={c.raw_length} would truncate; at most {fit} fits "
                f"inputs_length={c.inputs_length}, targets_length={c.targets_length}"
            )
        return c.raw_length or fit

    @functools.cached_property
    def examples_per_row(self) -> int:
        if not self.config.pack:
            return 1
        li, lt = span_corruption.corrupted_lengths(self.raw_length, *self._noise)
        return min(self.config.inputs_length // li, self.config.targets_length // lt)

    def _meta(self) -> dict[str, Any]:
        return {"raw_length": self.raw_length}

    # ---------------------------------------------------------------- examples and batches

    def _example(self, chunk: np.ndarray, key: Sequence[int]) -> features.Example:
        return span_corruption.corrupt(
            chunk,
            np.random.default_rng(list(key)),
            vocab_size=self.vocab.vocab_size,
            eos_id=self.vocab.eos_id,
            noise_density=self.config.noise_density,
            mean_noise_span_length=self.config.mean_noise_span_length,
        )

    def _batch(self, rows: Sequence[Sequence[features.Example]]) -> pipeline.Batch:
        c = self.config
        return features.make_batch(rows, c.inputs_length, c.targets_length, c.pack)

    # ---------------------------------------------------------------- text files

    @functools.cached_property
    def _train_chunks(self) -> np.ndarray:
        chunks = sources.text_file_chunks(
            self.config.train_files, self.vocab, self.raw_length, self.config.documents
        )
        if not len(chunks):
            raise ConfigError(f"{self.config.train_files!r} holds less than one chunk of text")
        return chunks

    @functools.cached_property
    def train_order(self) -> pipeline.EpochOrder:
        """The chunk order, epoch by epoch, drawn from (seed, epoch)."""
        return pipeline.EpochOrder(self.seed, _PERMUTATION, len(self._train_chunks))

    def _train_example(self, e: int) -> features.Example:
        chunk = self._train_chunks[self.train_order.index(e)]
        return self._example(chunk, (self.seed, _TRAIN, e))

    def _text_file_train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        size, k = self.split.global_batch_size, self.examples_per_row
        rows = range(size)[self.split.local_slice(size)]
        step = start_step
        while True:
            first = step * size * k
            yield self._batch(
                [[self._train_example(first + r * k + j) for j in range(k)] for r in rows]
            )
            step += 1

    # ---------------------------------------------------------------- tfds

    def _tfds_stream(self, split: str, shuffle_seed: int | None) -> Iterator[np.ndarray]:
        c = self.config
        tokens = sources.tfds_token_stream(
            self.vocab,
            c.tfds_name,
            split,
            data_dir=c.data_dir,
            shuffle_seed=shuffle_seed,
            shuffle_buffer_size=c.shuffle_buffer_size,
            process_index=self.split.process_index,
            process_count=self.split.process_count,
        )
        return sources.stream_chunks(tokens, self.raw_length)

    def _tfds_train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        run_seed = int(np.random.SeedSequence([self.seed, start_step]).generate_state(1)[0])
        chunks = self._tfds_stream(self.config.tfds_train_split, run_seed)
        key = (self.seed, _TRAIN, self.split.process_index, start_step)
        count = 0
        while True:
            rows = []
            for _ in range(self.split.local_batch_size):
                row = []
                for _ in range(self.examples_per_row):
                    row.append(self._example(next(chunks), key + (count,)))
                    count += 1
                rows.append(row)
            yield self._batch(rows)

    # ---------------------------------------------------------------- the contract

    def _eval_split(self, split: str | None) -> str:
        if self.config.source == "text_files":
            return pipeline.own_split(split, TEXT_FILE_SPLITS, "span_corruption (text files)")
        return self.config.tfds_eval_split if split is None else split

    def eval_chunks(self, split: str | None = None) -> np.ndarray:
        """The raw chunks of an eval split (None: the configured one), read once."""
        split = self._eval_split(split)
        if split not in self._eval_chunks:
            c, n = self.config, self.config.num_eval_examples
            if c.source == "tfds":
                stream = self._tfds_stream(split, shuffle_seed=None)
                found = list(itertools.islice(stream, n or None))
                chunks = np.stack(found) if found else np.zeros((0, self.raw_length), np.int32)
            elif split == "train":
                chunks = self._train_chunks
            else:
                chunks = sources.text_file_chunks(
                    c.eval_files, self.vocab, self.raw_length, c.documents
                )
            chunks = chunks[: n or None]
            if not len(chunks):
                raise ConfigError(f"the eval data ({split}) holds less than one chunk of text")
            self._eval_chunks[split] = chunks
        return self._eval_chunks[split]

    def num_eval_examples(self, split: str | None = None) -> int:
        return len(self.eval_chunks(split))

    def train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        if self.config.source == "tfds":
            return self._tfds_train_batches(start_step)
        return self._text_file_train_batches(start_step)

    def eval_batches(self, split: str | None = None) -> Iterator[pipeline.Batch]:
        chunks = self.eval_chunks(split)
        return self._eval_batches_of(
            len(chunks),
            lambda ids: [self._example(chunks[i], (_EVAL_SEED, _EVAL, i)) for i in ids],
            per_row=self.examples_per_row,
            packed=self.config.pack,
        )
