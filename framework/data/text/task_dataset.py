"""The `text_task` dataset: T5 fine-tuning batches of a text-to-text task or mixture.

`config.dataset.task` names a task of `framework.data.text.tasks` (`glue/sst2`,
`squad`, `polarity`, ...) or a mixture (`glue`, `super_glue`). The data is read whole
into memory as text (tfds data sets must be prepared beforehand: nothing is downloaded
during a run; local-file tasks read `data_dir`, default the task's own folder) and
tokenised batch by batch: `inputs` and `targets` are cut to `inputs_length - 1` and
`targets_length - 1` tokens and end with EOS, as T5 does.

Training: every step takes `global_batch_size * examples_per_row` example slots. Each
task's training examples form a stream, epoch after epoch, each epoch in a seeded
permutation (`shuffle`; stored order otherwise). A mixture draws how many slots of a
step each task fills (multinomial on the example-proportional rates, `tasks.mixing_rates`
with `mixing_rate_cap`, from blocks of steps keyed by (seed, block)) and spreads them
over the step with a permutation keyed by (seed, step); a task's slots take the next
examples of its stream. So a training batch is a function of (seed, step) alone:
`train_batches(start_step)` resumes exactly, and each process builds only its rows.

Packing (`pack`, training only): a step's examples are placed first-fit, in order, into
the batch's rows as whole examples with segment ids and positions (`features`);
`examples_per_row` (0: enough to fill about 90% of a row on average, from a sample of
the training data) sets how many a step takes, and the rare example that fits in no
row of its step is skipped (its stream moves on).

Evaluation: the `eval_split` of every evaluated task (a mixture's `eval_tasks`), the
first `num_eval_examples` of each (0: all), in stored order, one example per row (never
packed). `eval_examples()` lists them, preprocessed, each with its `task`: global row r
of eval batch b is `eval_examples()[b * global_eval_batch_size + r]`, rows past the end
are padding with `mask` 0, and a process's rows are its `HostSplit.local_slice` of each
global batch. `score(texts)` scores the decoded texts of all eval examples.
"""

from __future__ import annotations

import collections
import functools
import glob
import itertools
import os
from typing import Any, Iterator, Mapping, Sequence

import ml_collections
import numpy as np

from framework.config import fields, registry
from framework.data import pipeline
from framework.data.text import features, sources, tasks, vocabulary
from framework.data.text.vocabulary import Vocabulary
from framework.errors import ConfigError
from framework.metrics import text_metrics

_ORDER, _MIX, _SLOTS, _PACK_SAMPLE = 0, 1, 2, 3
_BLOCK = 1024  # steps per multinomial draw of a mixture's task counts
_PACK_FILL = 0.9  # packing aims at this fraction of a row's tokens, on average
_PACK_SAMPLE_SIZE = 1000


# ---------------------------------------------------------------- reading


def not_prepared_message(task: tasks.Task, split: str, data_dir: str, error: Exception) -> str:
    """One line on why tfds cannot read `task`'s split here, and how to prepare it."""
    import tensorflow_datasets as tfds

    root = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
    said = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    pattern = os.path.join(root, *task.builder_name.split("/"), "**", "dataset_info.json")
    if glob.glob(pattern, recursive=True):
        return f"config.dataset.task={task.name!r}: tfds {task.tfds_name!r} split {split!r}: {said}"
    return (
        f"config.dataset.task={task.name!r} needs the tfds data set {task.tfds_name!r}, which is "
        f"not prepared in {root} (nothing is downloaded during a run); prepare it on a machine "
        f'with internet: python -c "import tensorflow_datasets as tfds; tfds.builder('
        f"'{task.tfds_name}', data_dir='DIR').download_and_prepare()\", then copy DIR here and "
        f"set config.dataset.data_dir=DIR"
    )


def read_examples(
    task: tasks.Task, split: str, data_dir: str = "", limit: int | None = None
) -> list[dict[str, Any]]:
    """The first `limit` (None: all) raw examples of a task's split, decoded, in order."""
    if task.read_local is not None:
        return task.read_local(data_dir or task.local_dir, split)[:limit]
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(task.tfds_name, split=split, data_dir=data_dir or None, download=False)
    except Exception as error:  # tfds raises several types for "not here"
        raise ConfigError(not_prepared_message(task, split, data_dir, error)) from None
    return [tasks.decode_example(x) for x in itertools.islice(tfds.as_numpy(ds), limit)]


# ---------------------------------------------------------------- the builder


@registry.DATASETS.register("text_task")
class TextTask(pipeline.DatasetBuilder):
    """Fine-tuning batches of a text-to-text task or mixture (see the module docstring)."""

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        c.task = "glue/sst2"  # a task or a mixture (glue, super_glue), see tasks.py
        c.data_dir = ""  # tfds data dir ('': tfds' default); local-file tasks: their folder
        c.vocab_path = ""  # a SentencePiece .model (pad 0, eos 1 as in T5)
        c.extra_ids = 100  # sentinels on top of the SentencePiece pieces
        c.inputs_length = 512
        c.targets_length = 64
        c.pack = False  # training rows hold several whole examples (segment ids, positions)
        c.examples_per_row = 0  # pack: examples per row a step takes; 0: from the lengths
        c.num_eval_examples = 0  # first examples of each task's eval split; 0: all
        c.shuffle = True  # each epoch of a task in a seeded order; False: stored order
        c.mixing_rate_cap = tasks.DEFAULT_RATE_CAP  # a mixture's rate: min(examples, cap)
        return c

    @classmethod
    def check_config(cls, c: ml_collections.ConfigDict) -> None:
        tasks.get_mixture(c.task)
        for key in ("inputs_length", "targets_length", "mixing_rate_cap"):
            fields.check_positive(f"config.dataset.{key}", c[key])
        for key in ("extra_ids", "num_eval_examples", "examples_per_row"):
            if c[key] < 0:
                raise ConfigError(f"config.dataset.{key} must be >= 0, got {c[key]}")

    def __init__(self, config: ml_collections.ConfigDict, split: pipeline.HostSplit, seed: int):
        super().__init__(config, split, seed)
        c = config
        if not c.vocab_path:
            raise ConfigError("config.dataset.vocab_path must name a SentencePiece .model file")
        if not sources.path_exists(c.vocab_path):
            raise ConfigError(
                f"config.dataset.vocab_path={c.vocab_path!r} does not exist; fine-tuning reuses "
                "the pre-training vocabulary (e.g. data/shakespeare/spm.model from `python -m "
                "launch.prepare_data shakespeare --out_dir=data/shakespeare`)"
            )
        self.mixture = tasks.get_mixture(c.task)
        self.train_tasks = [tasks.TASKS[name] for name in self.mixture.train_tasks]
        self.eval_tasks = [tasks.TASKS[name] for name in self.mixture.eval_tasks]
        self._permutations: dict[tuple[int, int], np.ndarray] = {}
        self._block_starts = [np.zeros(len(self.train_tasks), np.int64)]
        self._blocks: dict[int, np.ndarray] = {}

    # ---------------------------------------------------------------- vocabulary and tokens

    @functools.cached_property
    def vocab(self) -> Vocabulary:
        return vocabulary.load_for_batches(self.config.vocab_path, self.config.extra_ids)

    def encode(self, texts: Sequence[str], length: int) -> list[np.ndarray]:
        """Token ids of each text cut to `length - 1`, then EOS (T5's append_eos_after_trim)."""
        eos = self.vocab.eos_id
        return [
            np.asarray(ids[: length - 1] + [eos], np.int32)
            for ids in self.vocab.encode_batch(list(texts))
        ]

    def _examples(self, pairs: Sequence[tuple[str, str]]) -> list[features.Example]:
        c = self.config
        inputs = self.encode([p[0] for p in pairs], c.inputs_length)
        targets = self.encode([p[1] for p in pairs], c.targets_length)
        return list(zip(inputs, targets))

    # ---------------------------------------------------------------- training data

    @functools.cached_property
    def train_data(self) -> list[tuple[list[str], list[str]]]:
        """Per training task, its training examples' inputs and targets (text)."""
        data = []
        for task in self.train_tasks:
            raw = read_examples(task, task.train_split, self.config.data_dir)
            examples = [e for x in raw for e in task.train_examples(x)]
            if not examples:
                raise ConfigError(
                    f"config.dataset.task={self.config.task!r}: {task.name} split "
                    f"{task.train_split!r} holds no training examples"
                )
            data.append(([e["inputs"] for e in examples], [e["targets"] for e in examples]))
        return data

    @functools.cached_property
    def mixing_rates(self) -> dict[str, float]:
        """Each training task's example-proportional rate (its share is rate / sum)."""
        sizes = {t.name: len(d[0]) for t, d in zip(self.train_tasks, self.train_data)}
        return tasks.mixing_rates(sizes, self.config.mixing_rate_cap)

    @functools.cached_property
    def _probabilities(self) -> np.ndarray:
        rates = np.array(list(self.mixing_rates.values()), np.float64)
        return rates / rates.sum()

    @functools.cached_property
    def examples_per_row(self) -> int:
        c = self.config
        if not c.pack:
            return 1
        if c.examples_per_row:
            return c.examples_per_row
        rng = np.random.default_rng([_PACK_SAMPLE])
        chosen = rng.choice(len(self.train_tasks), _PACK_SAMPLE_SIZE, p=self._probabilities)
        pairs = []
        for t in chosen:
            inputs, targets = self.train_data[t]
            i = int(rng.integers(len(inputs)))
            pairs.append((inputs[i], targets[i]))
        examples = self._examples(pairs)
        mean_inputs = np.mean([len(i) for i, _ in examples])
        mean_targets = np.mean([len(t) for _, t in examples])
        fit = min(c.inputs_length / mean_inputs, c.targets_length / mean_targets)
        return max(1, int(_PACK_FILL * fit))

    @property
    def _slots_per_step(self) -> int:
        return self.split.global_batch_size * self.examples_per_row

    def _block_counts(self, block: int) -> np.ndarray:
        """[_BLOCK, tasks]: how many slots each task fills in each step of a block."""
        if block not in self._blocks:
            rng = np.random.default_rng([self.seed, _MIX, block])
            counts = rng.multinomial(self._slots_per_step, self._probabilities, size=_BLOCK)
            self._blocks = {b: v for b, v in self._blocks.items() if b >= block - 1}
            self._blocks[block] = counts
        return self._blocks[block]

    def _stream_starts(self, step: int) -> np.ndarray:
        """Each task's stream position at the start of `step` (examples taken before it)."""
        block, within = divmod(step, _BLOCK)
        while len(self._block_starts) <= block:
            done = len(self._block_starts) - 1
            self._block_starts.append(self._block_starts[-1] + self._block_counts(done).sum(0))
        return self._block_starts[block] + self._block_counts(block)[:within].sum(0)

    def step_slots(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(task, stream position) of each example slot of a training step."""
        size = self._slots_per_step
        if len(self.train_tasks) == 1:
            return np.zeros(size, np.int64), step * size + np.arange(size, dtype=np.int64)
        counts = self._block_counts(step // _BLOCK)[step % _BLOCK]
        starts = self._stream_starts(step)
        order = np.random.default_rng([self.seed, _SLOTS, step]).permutation(size)
        task_of = np.repeat(np.arange(len(counts)), counts)[order]
        position = np.empty(size, np.int64)
        for t, start in enumerate(starts):
            where = np.flatnonzero(task_of == t)
            position[where] = start + np.arange(len(where))
        return task_of, position

    def _record(self, task: int, position: int) -> int:
        """The training example at `position` of task's stream (epochs one after another)."""
        n = len(self.train_data[task][0])
        epoch, within = divmod(int(position), n)
        if not self.config.shuffle:
            return within
        key = (task, epoch)
        if key not in self._permutations:
            rng = np.random.default_rng([self.seed, _ORDER, task, epoch])
            stale = [k for k in self._permutations if k[0] == task and k[1] < epoch - 1]
            for k in stale:
                del self._permutations[k]
            self._permutations[key] = rng.permutation(n)
        return int(self._permutations[key][within])

    def _train_pairs(self, task_of: np.ndarray, position: np.ndarray) -> list[tuple[str, str]]:
        pairs = []
        for t, p in zip(task_of.tolist(), position.tolist()):
            inputs, targets = self.train_data[t]
            i = self._record(t, p)
            pairs.append((inputs[i], targets[i]))
        return pairs

    def _packed_rows(self, examples: list[features.Example]) -> list[list[features.Example]]:
        """First-fit of whole examples, in order, into the global batch's rows."""
        c, size = self.config, self.split.global_batch_size
        rows: list[list[features.Example]] = [[] for _ in range(size)]
        used = np.zeros((2, size), np.int64)
        room = np.array([[c.inputs_length], [c.targets_length]])
        for inputs, targets in examples:
            need = np.array([[len(inputs)], [len(targets)]])
            fits = np.flatnonzero(np.all(used + need <= room, axis=0))
            if fits.size:
                rows[fits[0]].append((inputs, targets))
                used[:, fits[0]] += need[:, 0]
        return rows

    def train_batch(self, step: int) -> pipeline.Batch:
        """This process's rows of the training batch of `step`."""
        c, size = self.config, self.split.global_batch_size
        task_of, position = self.step_slots(step)
        if not c.pack:
            local = self.split.local_slice(size)
            examples = self._examples(self._train_pairs(task_of[local], position[local]))
            return features.make_batch([[e] for e in examples], c.inputs_length, c.targets_length)
        rows = self._packed_rows(self._examples(self._train_pairs(task_of, position)))
        local_rows = rows[self.split.local_slice(size)]
        batch = features.make_batch(local_rows, c.inputs_length, c.targets_length, packed=True)
        batch["mask"] = np.array([float(bool(row)) for row in local_rows], np.float32)
        return batch

    def train_batches(self, start_step: int) -> Iterator[pipeline.Batch]:
        for step in itertools.count(start_step):
            yield self.train_batch(step)

    # ---------------------------------------------------------------- evaluation

    @functools.cached_property
    def _eval_examples(self) -> list[dict[str, Any]]:
        c, out = self.config, []
        for task in self.eval_tasks:
            raw = read_examples(task, task.eval_split, c.data_dir, c.num_eval_examples or None)
            out += [{**task.preprocess(x), "task": task.name} for x in raw]
        if not out:
            raise ConfigError(f"config.dataset.task={c.task!r}: the eval splits hold no examples")
        return out

    def eval_examples(self) -> list[dict[str, Any]]:
        """The preprocessed eval examples in eval-batch order (see the module docstring):
        `inputs`, `targets`, `task` and what scoring needs (`label`, `answers`, `group`)."""
        return self._eval_examples

    def eval_batches(self) -> Iterator[pipeline.Batch]:
        c, examples = self.config, self._eval_examples
        size = self.split.global_eval_batch_size
        rows = range(size)[self.split.local_slice(size)]
        for first in range(0, len(examples), size):
            ids = [first + r for r in rows if first + r < len(examples)]
            pairs = [(examples[i]["inputs"], examples[i]["targets"]) for i in ids]
            batch = features.make_batch(
                [[e] for e in self._examples(pairs)], c.inputs_length, c.targets_length
            )
            yield pipeline.pad_batch(batch, len(rows))

    def score(self, texts: Sequence[str]) -> dict[str, float]:
        """`task/metric` scores of the decoded texts of `eval_examples()` (in that order),
        plus `glue_average` / `super_glue_average` when every task of it was evaluated."""
        examples = self._eval_examples
        if len(texts) != len(examples):
            raise ValueError(f"{len(texts)} texts for {len(examples)} eval examples")
        by_task: dict[str, list[int]] = collections.defaultdict(list)
        for i, example in enumerate(examples):
            by_task[example["task"]].append(i)
        per_task = {
            name: tasks.TASKS[name].score([examples[i] for i in ids], [texts[i] for i in ids])
            for name, ids in by_task.items()
        }
        flat = {f"{name}/{key}": v for name, s in per_task.items() for key, v in s.items()}
        for average, groups in (
            (text_metrics.glue_average, text_metrics.GLUE_TASKS),
            (text_metrics.super_glue_average, text_metrics.SUPER_GLUE_TASKS),
        ):
            if {t for names in groups.values() for t in names} <= set(per_task):
                flat.update(average(per_task))
        return flat

    @property
    def meta(self) -> Mapping[str, Any]:
        return {
            "vocab_size": self.vocab.vocab_size,
            "num_eval_examples": len(self._eval_examples),
            "inputs_length": self.config.inputs_length,
            "targets_length": self.config.targets_length,
            "examples_per_row": self.examples_per_row,
            "eos_id": self.vocab.eos_id,
            "pad_id": 0,
            "tasks": list(self.mixture.eval_tasks),
        }
