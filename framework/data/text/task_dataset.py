"""The `text_task` dataset: T5 fine-tuning batches of a text-to-text task or mixture.

`config.dataset.task` names a task of `framework.data.text.tasks` (`glue/sst2`,
`squad`, `polarity`, `fine_food`, ...), a mixture (`glue`, `super_glue`), or a user's
classification task prepared in `data_dir` (default `data/<task>`, by `python -m
launch.prepare_data text_classification`). The data is read whole into memory as text
(tfds data sets must be prepared beforehand: nothing is downloaded during a run;
local-file tasks read `data_dir`, default the task's own folder) and tokenised batch by
batch: `inputs` and `targets` are cut to `inputs_length - 1` and
`targets_length - 1` tokens and end with EOS, as T5 does.

Training: every step takes `global_batch_size * examples_per_row` example slots. Each
task's training examples form a stream, epoch after epoch, each epoch in a seeded
permutation (`shuffle`, `pipeline.EpochOrder`; stored order otherwise). A mixture draws
how many slots of a step each task fills (multinomial on the example-proportional
rates, `tasks.mixing_rates` with `mixing_rate_cap`, from blocks of steps keyed by
(seed, block)) and spreads them over the step with a permutation keyed by (seed, step);
a task's slots take the next examples of its stream. So a training batch is a function
of (seed, step) alone: `train_batches(start_step)` resumes exactly, and each process
builds only its rows.

Packing (`pack`, training only): a step's examples are placed first-fit, in order, into
the batch's rows as whole examples with segment ids and positions (`features`);
`examples_per_row` (0: enough to fill about 90% of a row on average, from a sample of
the training data) sets how many a step takes, and the rare example that fits in no
row of its step is skipped (its stream moves on).

Evaluation: the `eval_split` of every evaluated task (a mixture's `eval_tasks`), or
the split named to `eval_batches(split)` (`validation`, `test`, a local task's `train`,
...), the first `num_eval_examples` of each (0: all), in stored order, one example per
row (never packed). `eval_examples(split)` lists them, preprocessed, each with its
`task`: global row r of eval batch b is `eval_examples(split)[b * global_eval_batch_size
+ r]`, rows past the end are padding with `mask` 0, and a process's rows are its
`HostSplit.local_slice` of each global batch. `score(texts, split)` scores the decoded
texts of all of that split's eval examples.
"""

from __future__ import annotations

import collections
import functools
import itertools
from typing import Any, Iterator, Sequence

import ml_collections
import numpy as np

from framework.config import fields, registry
from framework.data import pipeline
from framework.data.text import base, features, sources, tasks
from framework.errors import ConfigError
from framework.metrics import text_metrics

_ORDER, _MIX, _SLOTS, _PACK_SAMPLE = 0, 1, 2, 3
_BLOCK = 1024  # steps per multinomial draw of a mixture's task counts
_PACK_FILL = 0.9  # packing aims at this fraction of a row's tokens, on average
_PACK_SAMPLE_SIZE = 1000


# ---------------------------------------------------------------- the builder


@registry.DATASETS.register("text_task")
class TextTask(base.TextBuilder):
    """Fine-tuning batches of a text-to-text task or mixture (see the module docstring)."""

    VOCAB_HINT = (
        "fine-tuning reuses the pre-training vocabulary (e.g. data/shakespeare/spm.model from "
        "`python -m launch.prepare_data shakespeare --out_dir=data/shakespeare`)"
    )

    @classmethod
    def default_config(cls) -> ml_collections.ConfigDict:
        c = super().default_config()  # vocab_path, extra_ids, lengths, pack, ...
        c.task = "glue/sst2"  # a task or a mixture (glue, super_glue), see tasks.py
        c.data_dir = ""  # tfds data dir ('': tfds' default); local-file tasks: their folder
        c.targets_length = 64
        c.examples_per_row = 0  # pack: examples per row a step takes; 0: from the lengths
        c.num_eval_examples = 0  # first examples of each task's eval split; 0: all
        c.shuffle = True  # each epoch of a task in a seeded order; False: stored order
        c.mixing_rate_cap = tasks.DEFAULT_RATE_CAP  # a mixture's rate: min(examples, cap)
        return c

    @classmethod
    def check_config(cls, c: ml_collections.ConfigDict) -> None:
        tasks.get_mixture(c.task, data_dir=c.data_dir)
        super().check_config(c)
        fields.check_positive("config.dataset.mixing_rate_cap", c.mixing_rate_cap)
        if c.examples_per_row < 0:
            raise ConfigError(
                f"config.dataset.examples_per_row must be >= 0, got {c.examples_per_row}"
            )

    def __init__(self, config: ml_collections.ConfigDict, split: pipeline.HostSplit, seed: int):
        super().__init__(config, split, seed)  # checks the values and the vocabulary
        self.mixture = tasks.get_mixture(config.task, data_dir=config.data_dir)
        names = dict.fromkeys(self.mixture.train_tasks + self.mixture.eval_tasks)
        self.by_name = {name: tasks.get_task(name, data_dir=config.data_dir) for name in names}
        self.train_tasks = [self.by_name[name] for name in self.mixture.train_tasks]
        self.eval_tasks = [self.by_name[name] for name in self.mixture.eval_tasks]
        self._block_starts = [np.zeros(len(self.train_tasks), np.int64)]
        self._blocks: dict[int, np.ndarray] = {}
        self._eval_examples: dict[str | None, list[dict[str, Any]]] = {}

    # ---------------------------------------------------------------- tokens

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
            raw = sources.read_examples(task, task.train_split, self.config.data_dir)
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

    @functools.cached_property
    def train_orders(self) -> list[pipeline.EpochOrder]:
        """Per training task, its examples' order, epoch by epoch, from (seed, task, epoch)."""
        return [
            pipeline.EpochOrder(self.seed, (_ORDER, t), len(inputs))
            for t, (inputs, _) in enumerate(self.train_data)
        ]

    def _record(self, task: int, position: int) -> int:
        """The training example at `position` of task's stream (epochs one after another)."""
        if not self.config.shuffle:
            return int(position) % len(self.train_data[task][0])
        return self.train_orders[task].index(position)

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

    def eval_examples(self, split: str | None = None) -> list[dict[str, Any]]:
        """The preprocessed eval examples of `split` (None: each task's `eval_split`) in
        eval-batch order (see the module docstring): `inputs`, `targets`, `task` and what
        scoring needs (`label`, `answers`, `group`)."""
        if split not in self._eval_examples:
            c, out = self.config, []
            for task in self.eval_tasks:
                task_split = task.eval_split if split is None else split
                limit = c.num_eval_examples or None
                raw = sources.read_examples(task, task_split, c.data_dir, limit)
                out += [{**task.preprocess(x), "task": task.name} for x in raw]
            if not out:
                which = "the eval splits hold" if split is None else f"split {split!r} holds"
                raise ConfigError(f"config.dataset.task={c.task!r}: {which} no examples")
            self._eval_examples[split] = out
        return self._eval_examples[split]

    def num_eval_examples(self, split: str | None = None) -> int:
        return len(self.eval_examples(split))

    def eval_batches(self, split: str | None = None) -> Iterator[pipeline.Batch]:
        examples = self.eval_examples(split)
        return self._eval_batches_of(
            len(examples),
            lambda ids: self._examples(
                [(examples[i]["inputs"], examples[i]["targets"]) for i in ids]
            ),
        )

    def score(self, texts: Sequence[str], split: str | None = None) -> dict[str, float]:
        """`task/metric` scores of the decoded texts of `eval_examples(split)` (in that
        order), plus `glue_average` / `super_glue_average` when every task of it was
        evaluated."""
        examples = self.eval_examples(split)
        if len(texts) != len(examples):
            raise ValueError(f"{len(texts)} texts for {len(examples)} eval examples")
        by_task: dict[str, list[int]] = collections.defaultdict(list)
        for i, example in enumerate(examples):
            by_task[example["task"]].append(i)
        per_task = {
            name: self.by_name[name].score([examples[i] for i in ids], [texts[i] for i in ids])
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

    def _meta(self) -> dict[str, Any]:
        return {"tasks": list(self.mixture.eval_tasks)}
