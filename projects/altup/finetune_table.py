"""The AltUp fine-tuning table: the `altup` table's pre-trained models, fine-tuned.

  python -m launch.reproduce altup_finetune --preset=tiny|quick|full --workdir=DIR

Every row's model is first pre-trained exactly as in the `altup` table's same preset
(`DIR/pretrain/<row>/seed_<n>`, trained if absent, reused otherwise), then fine-tuned
from those parameters (`config.init_from`; fresh Adafactor state and step count) on the
offline `polarity` task (`python -m launch.prepare_data polarity`, run on first use;
`POLARITY_DATA_DIR` names another directory of train.tsv / eval.tsv):
the recipe of `configs/altup/finetune.py` at the preset's budget, greedy decoding of
the held-out sentences, accuracy of the decoded label. After training, the fine-tuning
train steps of all rows are timed side by side (as in the `altup` table).
"""

from __future__ import annotations

import dataclasses
import importlib
import os

import ml_collections

from framework.config import registry
from framework.data.text import polarity
from framework.errors import ConfigError
from framework.experiments import run_budget, tables
from projects.altup import paper_tables

TASK = "polarity"
POLARITY_DIR = "data/polarity"
POLARITY_DIR_ENV = "POLARITY_DATA_DIR"
# The `altup` table's rows fine-tuned here (the five models).
ROWS = [
    "T5 dense",
    "AltUp K=2",
    "Recycled-AltUp K=2",
    "Sequence-AltUp stride 2",
    "T5 dense 2x wide",
]


@dataclasses.dataclass(frozen=True)
class Preset:
    pretrain: str  # the altup table's preset whose runs are fine-tuned
    steps: int
    batch_size: int
    timing_steps: int
    timing_rounds: int


PRESETS = {
    "tiny": Preset("tiny", 6, 8, timing_steps=2, timing_rounds=1),
    "quick": Preset("quick", 300, 16, timing_steps=10, timing_rounds=3),
    "full": Preset("full", 1000, 16, timing_steps=20, timing_rounds=5),
}


def _finetune_from(pretrain: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    module = importlib.import_module("configs.altup.finetune")
    return module.finetune_from(pretrain, TASK)


def _polarity_dir() -> str:
    """`data/polarity`, made on first use; or the directory `POLARITY_DATA_DIR` names
    (train.tsv and eval.tsv, used as they are: the tests' tiny corpus)."""
    given = os.environ.get(POLARITY_DIR_ENV)
    if given:
        missing = [n for n, p in polarity.paths(given).items() if not os.path.exists(p)]
        if missing:
            raise ConfigError(f"{POLARITY_DIR_ENV}={given!r} lacks {', '.join(missing)} (.tsv)")
        return given
    polarity.prepare(POLARITY_DIR)  # reused once made
    return POLARITY_DIR


def finetune_config(preset: Preset, pretrain: ml_collections.ConfigDict, data_dir: str):
    """The fine-tuning config of one row at the preset's budget (no init_from yet)."""
    c = _finetune_from(pretrain)
    c.dataset.data_dir = data_dir
    c.dataset.inputs_length = pretrain.dataset.inputs_length
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
    data_dir = _polarity_dir()
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
        tables.Column(f"eval.{TASK}/accuracy", "polarity accuracy (%)", "{:.1f}"),
        tables.Column("eval.accuracy", "token accuracy", "{:.3f}"),
        tables.Column("num_params", "parameters", "{:,.0f}", spread=False),
        tables.Column("step_time_ms", "fine-tune step (ms)", "{:.1f}", spread=False),
        tables.Column("relative_step_time", "step time vs dense", "{:.2f}", spread=False),
    ]
    c = rows[0].config
    num_train, num_eval = (len(polarity.read_split(data_dir, s)) for s in ("train", "eval"))
    point = 100 / num_eval
    title = (
        f"AltUp fine-tuning, {preset_name} preset: the altup table's `{preset.pretrain}` "
        f"models fine-tuned on polarity ({len(rows[0].seeds)} seed(s), {c.num_train_steps} "
        f"steps of batch {c.batch_size})"
    )
    notes = f"""
- Pre-training: the `altup` table's `{preset.pretrain}` preset (span corruption on the
  Shakespeare text), in `pretrain/` under this table's directory.
- Fine-tuning: the movie-review polarity sentences of `{data_dir}` (train {num_train}, held
  out {num_eval}; `python -m launch.prepare_data polarity`), text-to-text
  (`polarity sentence: ...` -> `positive` / `negative`), from each seed's pre-trained
  parameters with a fresh Adafactor, constant learning rate {c.lr.base}, dropout
  {c.model.dropout_rate}, inputs {c.dataset.inputs_length} / targets
  {c.dataset.targets_length} tokens.
- Polarity accuracy: greedy decoding of the {num_eval} held-out sentences, the decoded text
  compared with the label word (a text that is neither label counts as wrong), in percent;
  token accuracy: teacher-forced accuracy of the target tokens.
- Step time: the fine-tuning train step of every row, interleaved in one process
  ({preset.timing_rounds} rounds of {preset.timing_steps} steps), relative to dense T5.
- With {num_eval} held-out sentences one sentence is {point:.3g} points: read differences
  below {2 * point:.3g} points as noise.
"""
    return tables.Table(
        title,
        rows,
        columns,
        notes,
        extra=paper_tables.step_time_extra(preset.timing_steps, preset.timing_rounds),
    )
