"""The `span_corruption` dataset: T5 pre-training batches from text files or tfds C4.

Each example is a chunk of `raw_length` tokens of the concatenated token stream,
corrupted as in T5 (`span_corruption`); `raw_length` (0: computed) is the largest
chunk length whose corrupted inputs and targets fit `inputs_length` and
`targets_length`, so nothing is truncated. Every example's randomness comes from
its own `np.random.default_rng` key, so examples do not depend on batching or on how
many processes there are.

- `text_files`: the train files' chunks are held in memory; global training example
  e is chunk perm_epoch[e mod N] (a seeded permutation per epoch) corrupted with key
  (seed, e), so train batches are a function of (seed, step) and each process builds
  only its rows of the global batch. Eval: the first `num_eval_examples` chunks of
  the eval files (0: all), corrupted with a fixed key independent of the run's seed.
- `tfds` (`c4/en`): each process streams its share of the train split
  (`tfds.split_for_jax_process`), shuffled with a seed derived from (seed,
  start_step). A run is reproducible from (seed, start_step); a resumed run starts a
  fresh, seeded order rather than replaying the stream up to the step, which on C4
  would mean re-reading everything seen so far. Eval: the first `num_eval_examples`
  chunks of the eval split in stored order, read by every process.
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
from typing import Any, Iterator, Mapping, Sequence

import ml_collections
import numpy as np

from framework.config import fields, registry
from framework.data import pipeline
from framework.data.text import features, sources, span_corruption, vocabulary
from framework.data.text.vocabulary import Vocabulary
from framework.errors import ConfigError

_TRAIN, _EVAL, _PERMUTATION = 0, 1, 2
SOURCES = ("text_files", "tfds")
PREPARE_TEXT = "`python -m launch.prepare_data shakespeare --out_dir=DIR`"
_EVAL_SEED = 0  # the held-out set is the same for every run


@registry.DATASETS.register("span_corruption")
class SpanCorruption(pipeline.DatasetBuilder):
    """T5 span-corruption batches (see the module docstring)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.source = "text_files"  # text_files | tfds
        c.train_files = ""  # comma-separated globs (text_files)
        c.eval_files = ""
        c.documents = "lines"  # lines | paragraphs: one document per line / paragraph
        c.tfds_name = "c4/en:3.1.0"
        c.tfds_train_split = "train"
        c.tfds_eval_split = "validation"
        c.data_dir = ""  # tfds data dir ('' : tfds' default)
        c.shuffle_buffer_size = 10_000  # documents (tfds)
        c.vocab_path = ""  # a SentencePiece .model (pad 0, eos 1 as in T5)
        c.extra_ids = 100  # sentinels on top of the SentencePiece pieces
        c.inputs_length = 512
        c.targets_length = 114
        c.raw_length = 0  # chunk length; 0: the largest that fits both lengths
        c.noise_density = 0.15
        c.mean_noise_span_length = 3.0
        c.num_eval_examples = 8192  # first chunks of the eval data; 0: all
        c.pack = False  # whole examples per row, with segment ids and positions
        return c

    @classmethod
    def check_config(cls, c: ml_collections.ConfigDict) -> None:
        fields.check_one_of("config.dataset.source", c.source, SOURCES)
        fields.check_one_of("config.dataset.documents", c.documents, sources.DOCUMENTS)
        if not 0.0 < c.noise_density < 1.0:
            raise ConfigError(
                f"config.dataset.noise_density must lie in (0, 1), got {c.noise_density}"
            )
        for key in ("mean_noise_span_length", "inputs_length", "targets_length"):
            fields.check_positive(f"config.dataset.{key}", c[key])
        if c.source == "tfds":
            fields.check_positive(
                "config.dataset.shuffle_buffer_size", c.shuffle_buffer_size
            )
        for key in ("num_eval_examples", "raw_length", "extra_ids"):
            if c[key] < 0:
                raise ConfigError(f"config.dataset.{key} must be >= 0, got {c[key]}")

    def __init__(self, config: ml_collections.ConfigDict, split: pipeline.HostSplit, seed: int):
        super().__init__(config, split, seed)  # checks the values
        c = config
        # Where the data is: a config may leave it to the command line (C4's vocabulary).
        if c.source == "text_files" and not (c.train_files and c.eval_files):
            raise ConfigError(
                "config.dataset.train_files and config.dataset.eval_files must be set "
                f"(text files, e.g. from {PREPARE_TEXT})"
            )
        if not c.vocab_path:
            raise ConfigError("config.dataset.vocab_path must name a SentencePiece .model file")
        if not sources.path_exists(c.vocab_path):
            raise ConfigError(
                f"config.dataset.vocab_path={c.vocab_path!r} does not exist; make one with "
                "`python -m launch.prepare_data shakespeare --out_dir=DIR` or "
                "`python -m launch.prepare_data vocab ...`"
            )
        if c.source == "text_files":
            for key in ("train_files", "eval_files"):
                if not sources.matching_files(c[key]):
                    raise ConfigError(
                        f"config.dataset.{key}={c[key]!r}: no text files match; make them "
                        f"with {PREPARE_TEXT} (DIR/train.txt, DIR/eval.txt, DIR/spm.model) "
                        "or name your own (comma-separated globs)"
                    )

    # ---------------------------------------------------------------- shapes and vocabulary

    @functools.cached_property
    def vocab(self) -> Vocabulary:
        vocab = vocabulary.load_for_batches(self.config.vocab_path, self.config.extra_ids)
        _, spans = span_corruption.noise_counts(self.raw_length, *self._noise)
        if spans > vocab.extra_ids:
            raise ConfigError(f"{spans} noise spans need {spans} sentinels; extra_ids is fewer")
        return vocab

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

    @property
    def meta(self) -> Mapping[str, Any]:
        return {
            "vocab_size": self.vocab.vocab_size,
            "num_eval_examples": len(self._eval_chunks),
            "inputs_length": self.config.inputs_length,
            "targets_length": self.config.targets_length,
            "raw_length": self.raw_length,
            "examples_per_row": self.examples_per_row,
            "eos_id": self.vocab.eos_id,
            "pad_id": 0,
        }

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

    def _permutation(self, epoch: int) -> np.ndarray:
        """The chunk order of one epoch (the last two are kept: a batch may straddle)."""
        cache = self.__dict__.setdefault("_permutations", {})
        if epoch not in cache:
            rng = np.random.default_rng([self.seed, _PERMUTATION, epoch])
            cache[epoch] = rng.permutation(len(self._train_chunks))
            for old in sorted(cache)[:-2]:
                del cache[old]
        return cache[epoch]

    def _train_example(self, e: int) -> features.Example:
        epoch, position = divmod(e, len(self._train_chunks))
        chunk = self._train_chunks[self._permutation(epoch)[position]]
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

    @functools.cached_property
    def _eval_chunks(self) -> np.ndarray:
        c, n = self.config, self.config.num_eval_examples
        if c.source == "text_files":
            chunks = sources.text_file_chunks(
                c.eval_files, self.vocab, self.raw_length, c.documents
            )
        else:
            stream = self._tfds_stream(c.tfds_eval_split, shuffle_seed=None)
            found = list(itertools.islice(stream, n or None))
            chunks = np.stack(found) if found else np.zeros((0, self.raw_length), np.int32)
        chunks = chunks[: n or None]
        if not len(chunks):
            raise ConfigError("the eval data holds less than one chunk of text")
        return chunks

    def train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        if self.config.source == "tfds":
            return self._tfds_train_batches(start_step)
        return self._text_file_train_batches(start_step)

    def eval_batches(self) -> Iterator[pipeline.Batch]:
        chunks, k = self._eval_chunks, self.examples_per_row
        size = self.split.global_eval_batch_size
        rows = range(size)[self.split.local_slice(size)]
        for first in range(0, len(chunks), size * k):
            batch_rows = []
            for r in rows:
                ids = range(first + r * k, min(first + (r + 1) * k, len(chunks)))
                if ids:
                    batch_rows.append(
                        [self._example(chunks[i], (_EVAL_SEED, _EVAL, i)) for i in ids]
                    )
            yield pipeline.pad_batch(self._batch(batch_rows), len(rows))
