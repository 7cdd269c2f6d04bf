"""The AltUp fine-tuning table: the `altup` table's pre-trained models, fine-tuned.

  python -m launch.reproduce altup_finetune --preset=PRESET --workdir=DIR

Every row's model is first pre-trained exactly as in the `altup` table's preset of the
same name (`DIR/pretrain/<row>/seed_<n>`, trained if absent, reused otherwise), then
fine-tuned from those parameters (`config.init_from`; fresh Adafactor state and step
count) on an offline task, prepared on first use (`FINETUNE_DATA_DIR` names another
prepared folder of the task, used as it is): the recipe of `configs/altup/finetune.py`
at the preset's budget, greedy decoding of the held-out examples, accuracy (and
macro-F1) of the decoded label. After training, the fine-tuning train steps of all rows
are timed side by side (as in the `altup` table).

Presets:
- `english_quick`, `english_full` (the headline): pre-training on the English mix
  (`python -m launch.prepare_data english_mix`), fine-tuning on the 5,000 Amazon
  fine-food reviews (`python -m launch.prepare_data fine_food_reviews`; 4,000 train,
  1,000 held out).
- `tiny`, `quick`, `full`: pre-training on Shakespeare, fine-tuning on the 200 movie-review
  polarity sentences (20 held out: one sentence is 5 points, too few to compare models).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import os
from typing import Callable

import ml_collections

from framework.config import registry
from framework.data.text import classification, fine_food, polarity, tasks
from framework.experiments import run_budget, tables
from projects.altup import paper_tables

FINETUNE_DATA_DIR_ENV = "FINETUNE_DATA_DIR"
# The `altup` table's rows fine-tuned here (the five models).
ROWS = [
    "T5 dense",
    "AltUp K=2",
    "Recycled-AltUp K=2",
    "Sequence-AltUp stride 2",
    "T5 dense 2x wide",
]


@dataclasses.dataclass(frozen=True)
class FinetuneData:
    """An offline fine-tuning task: its prepared folder, made on first use."""

    task: str  # the registered task (`framework/data/text/tasks.py`)
    default_dir: str  # relative to the current directory
    prepare: Callable[[str], object]
    read_split: Callable[[str, str], list[dict]]  # (folder, split) -> examples with "label"
    splits: tuple[str, str]  # train, held out
    metrics: tuple[tuple[str, str], ...]  # (metric key, header)
    description: str  # for the notes


DATA = {
    "polarity": FinetuneData(
        "polarity",
        "data/polarity",
        polarity.prepare,
        polarity.read_split,
        ("train", "eval"),
        (("accuracy", "polarity accuracy (%)"),),
        "the movie-review polarity sentences (`python -m launch.prepare_data polarity`), "
        "`polarity sentence: ...` -> `positive` / `negative`",
    ),
    "fine_food": FinetuneData(
        "fine_food",
        "data/fine_food",
        fine_food.prepare,
        classification.read_split,
        ("train", "eval"),
        (("accuracy", "fine_food accuracy (%)"), ("macro_f1", "macro-F1 (%)")),
        "the Amazon fine-food reviews of R's `modeldata` (Debian `r-cran-modeldata`; "
        "`python -m launch.prepare_data fine_food_reviews`), `fine_food review: ...` -> "
        "`great` / `other`",
    ),
}


@dataclasses.dataclass(frozen=True)
class Preset:
    pretrain: str  # the altup table's preset whose runs are fine-tuned
    steps: int
    batch_size: int
    timing_steps: int
    timing_rounds: int
    task: str = "polarity"  # a DATA name
    inputs_length: int = 0  # 0: the pre-training inputs length
    learning_rate: float = 0.0  # 0: the fine-tuning config's


# Fine-food: constant learning rate 3e-3. On the dense row pre-trained 1000 steps on the
# mix, 300 fine-tuning steps reached 72.8% (68.4% at the recipe's 1e-3), 600 steps 76.3%
# (70.0%).
ENGLISH_QUICK = Preset(
    "english_quick",
    300,
    32,
    timing_steps=5,
    timing_rounds=2,
    task="fine_food",
    inputs_length=128,
    learning_rate=3e-3,
)
PRESETS = {
    "tiny": Preset("tiny", 6, 8, timing_steps=2, timing_rounds=1),
    "quick": Preset("quick", 300, 16, timing_steps=10, timing_rounds=3),
    "full": Preset("full", 1000, 16, timing_steps=20, timing_rounds=5),
    "english_quick": ENGLISH_QUICK,
    "english_full": dataclasses.replace(
        ENGLISH_QUICK, pretrain="english_full", steps=500, timing_steps=10, timing_rounds=3
    ),
}


def _finetune_from(pretrain: ml_collections.ConfigDict, task: str) -> ml_collections.ConfigDict:
    module = importlib.import_module("configs.altup.finetune")
    return module.finetune_from(pretrain, task)


def task_dir(data: FinetuneData) -> str:
    """The task's folder, made on first use; or the directory `FINETUNE_DATA_DIR` names
    (used as it is: the tests' tiny corpus)."""
    given = os.environ.get(FINETUNE_DATA_DIR_ENV)
    if given:
        for split in data.splits:
            data.read_split(given, split)  # a one-line error if it is not there
        return given
    data.prepare(data.default_dir)  # reused once made
    return data.default_dir


def finetune_config(preset: Preset, pretrain: ml_collections.ConfigDict, data_dir: str):
    """The fine-tuning config of one row at the preset's budget (no init_from yet)."""
    c = _finetune_from(pretrain, preset.task)
    c.dataset.data_dir = data_dir
    c.dataset.inputs_length = preset.inputs_length or pretrain.dataset.inputs_length
    if preset.learning_rate:
        c.lr.base = preset.learning_rate
    c.batch_size = preset.batch_size
    c.eval_batch_size = 32
    c.compute_flops = pretrain.compute_flops
    return run_budget.RunBudget(preset.steps, evals=1, checkpoints=1).apply(c)


def _from_pretrained(pretrain_row: tables.Row):
    """The row's `for_seed`: that seed's pre-trained run (trained first if absent)."""

    def for_seed(config: ml_collections.ConfigDict, seed: int, workdir: str):
        pretrain_dir = os.path.join(workdir, "pretrain")
        tables.run_one(pretrain_row, seed, pretrain_dir)
        with config.unlocked():
            config.init_from = os.path.join(pretrain_dir, pretrain_row.slug, f"seed_{seed}")
        return config

    return for_seed


@registry.TABLES.register("altup_finetune")
def altup_finetune_table(preset_name: str) -> tables.Table:
    preset = tables.pick_preset("altup_finetune", PRESETS, preset_name)
    pretraining = paper_tables.altup_table(preset.pretrain)
    by_name = {row.name: row for row in pretraining.rows}
    data = DATA[preset.task]
    data_dir = task_dir(data)
    rows = [
        tables.Row(
            name,
            finetune_config(preset, by_name[name].config, data_dir),
            by_name[name].seeds,
            for_seed=_from_pretrained(by_name[name]),
        )
        for name in ROWS
    ]
    columns = [
        *(
            tables.Column(f"eval.{data.task}/{key}", header, "{:.1f}")
            for key, header in data.metrics
        ),
        tables.Column("eval.accuracy", "token accuracy", "{:.3f}"),
        tables.Column("num_params", "parameters", "{:,.0f}", spread=False),
        tables.Column("step_time_ms", "fine-tune step (ms)", "{:.1f}", spread=False),
        tables.Column("relative_step_time", "step time vs dense", "{:.2f}", spread=False),
    ]
    c = rows[0].config
    train, held_out = (data.read_split(data_dir, split) for split in data.splits)
    majority_label, majority = collections.Counter(e["label"] for e in held_out).most_common(1)[0]
    if isinstance(majority_label, int):  # a label id (polarity): its name
        majority_label = tasks.get_task(data.task).labels[majority_label]
    point = 100 / len(held_out)
    pretrain_corpus = paper_tables.CORPORA[pretraining_preset(preset).corpus].description
    title = (
        f"AltUp fine-tuning, {preset_name} preset: the altup table's `{preset.pretrain}` "
        f"models fine-tuned on {data.task} ({len(rows[0].seeds)} seed(s), {c.num_train_steps} "
        f"steps of batch {c.batch_size})"
    )
    notes = f"""
- Pre-training: the `altup` table's `{preset.pretrain}` preset (span corruption on
  {pretrain_corpus}), in `pretrain/` under this table's directory.
- Fine-tuning: {data.description}, in `{data_dir}` (train {len(train)}, held out
  {len(held_out)}), from each seed's pre-trained parameters with a fresh Adafactor,
  constant learning rate {c.lr.base}, dropout {c.model.dropout_rate}, inputs
  {c.dataset.inputs_length} / targets {c.dataset.targets_length} tokens.
- {data.task} accuracy: greedy decoding of the {len(held_out)} held-out examples, the decoded
  text compared with the label (a text that is no label counts as wrong), in percent;
  token accuracy: teacher-forced accuracy of the target tokens. Always answering the
  majority label (`{majority_label}`) scores {100 * majority / len(held_out):.1f}%.
- Step time: the fine-tuning train step of every row, interleaved in one process
  ({preset.timing_rounds} rounds of {preset.timing_steps} steps), relative to dense T5.
- With {len(held_out)} held-out examples one example is {point:.3g} points.
"""
    return tables.Table(
        title,
        rows,
        columns,
        notes,
        extra=paper_tables.step_time_extra(preset.timing_steps, preset.timing_rounds),
        baseline=paper_tables.DENSE,
    )


def pretraining_preset(preset: Preset) -> paper_tables.Preset:
    """The `altup` table's preset whose runs `preset` fine-tunes."""
    return paper_tables.PRESETS[preset.pretrain]
