"""Fine-tuning T5.1.1 (+ AltUp) on a text-to-text task, the AltUp paper's recipe.

The argument is a comma-separated list: `task=NAME` (a task or mixture of
`framework/data/text/tasks.py`: glue/sst2 ... glue/wnli, glue, super_glue/boolq ...,
super_glue, squad, trivia_qa, polarity, fine_food; default glue/sst2, fine_food at the
CPU sizes; or a task of your own, see below), `size=` and `variant=` (or the bare
tokens) and every other token of `configs/altup/t5.py` (k=, readout=, ...), so that the
model is the pre-trained one.
Start from a pre-training run with `--config.init_from=WORKDIR` (parameters only; fresh
optimizer and step count).

Local tasks read their folder (`config.dataset.data_dir`, set to the task's own):
`polarity` data/polarity, `fine_food` data/fine_food (`python -m launch.prepare_data
fine_food_reviews`: 4,000 Amazon fine-food reviews to train on, 1,000 held out,
`great` / `other`, accuracy and macro-F1). A name that is not registered is a task of
your own labelled text, prepared in data/NAME by
  python -m launch.prepare_data text_classification --input=PATH --name=NAME
(a folder per class of .txt files, or a TSV / CSV / JSONL file; docs/data.md), then
fine-tuned as `task=NAME` (another folder: `--config.dataset.data_dir=DIR`).

Recipe (AltUp paper, section 5: fine-tune 50k steps at batch 256 on each benchmark):
Adafactor, constant learning rate 1e-3 (T5's fine-tuning rate; the paper gives no rate,
our choice), dropout 0.1 (T5's fine-tuning dropout; our choice), inputs 512 tokens,
targets 128 (64 for classification tasks, GLUE, SuperGLUE and the local ones; our
choice), greedy decoding of the eval split at every evaluation (`config.evals.decode`).
The CPU sizes (tiny, mini) take the pre-training vocabulary (`data=DIR` or
`data=english_mix`, default data/shakespeare) and a short budget, and default to the
offline `fine_food` task:
  python -m launch.train \
      --config=configs/altup/finetune.py:task=fine_food,tiny,altup,data=english_mix \
      --config.init_from=runs/altup_finetune_english_full/pretrain/altup_k_2/seed_0 \
      --workdir=/tmp/ft
Sizes small and up need T5's vocabulary: `--config.dataset.vocab_path=.../spm.model`.
"""

from __future__ import annotations

import ml_collections

from configs.altup import t5
from framework.config import schema
from framework.data.text import tasks

CLASSIFICATION_BENCHMARKS = ("glue", "super_glue")  # mixtures of label (or short) targets
CPU_BUDGETS = {
    "tiny": {
        "dataset.inputs_length": 64,
        "dataset.targets_length": 8,
        "batch_size": 16,
        "eval_batch_size": 32,
        "num_train_steps": 300,
        "log_every_steps": 25,
        "eval_every_steps": 150,
        "checkpoint_every_steps": 150,
    },
    "mini": {
        "dataset.inputs_length": 128,
        "dataset.targets_length": 16,
        "batch_size": 32,
        "eval_batch_size": 64,
        "num_train_steps": 2_000,
        "log_every_steps": 100,
        "eval_every_steps": 500,
        "checkpoint_every_steps": 500,
    },
}


def get_config(arg: str | None = None):
    spec = t5.parse_arg(arg, task="")
    task = spec.task or ("fine_food" if spec.size in t5.CPU_SIZES else "glue/sst2")
    return finetune_from(t5.config_from_spec(spec), task)


def finetune_from(pretrain: ml_collections.ConfigDict, task: str) -> ml_collections.ConfigDict:
    """The fine-tuning config of a pre-training config (`configs/altup/t5.py`): the same
    model, so that `init_from` fits, with the task's data and the fine-tuning recipe."""
    c = pretrain.copy_and_resolve_references()
    size = c.model.size
    cpu = size in t5.CPU_SIZES
    vocab_path = c.dataset.get("vocab_path", "")
    with c.unlocked():
        c.dataset_name = "text_task"
        c.dataset = _dataset_defaults()
    c.lock()  # the new dataset block too: a misspelt key below is an error
    c.experiment_name = f"finetune_{task.replace('/', '_')}_{c.experiment_name}"
    c.dataset.task = task
    c.dataset.vocab_path = vocab_path
    c.dataset.inputs_length = 512
    classification = task.split("/")[0] in CLASSIFICATION_BENCHMARKS
    c.dataset.targets_length = 64 if classification or tasks.is_classification(task) else 128
    c.dataset.data_dir = tasks.local_data_dir(task)  # '' for tfds: its default data dir

    c.model.dropout_rate = 0.1
    c.optimizer.name = "adafactor"
    c.lr.factors = "constant"
    c.lr.base = 1e-3
    c.lr.warmup_steps = 0
    c.lr.decay_steps = 0
    c.batch_size = 256
    c.eval_batch_size = 256
    c.num_train_steps = 50_000
    c.log_every_steps = 100
    c.eval_every_steps = 5_000
    c.checkpoint_every_steps = 5_000
    schema.add_eval(c, "decode", "decoding")  # greedy; beside the default `metrics`
    if cpu:
        c.update_from_flattened_dict(CPU_BUDGETS[size])
    return c


def _dataset_defaults():
    from framework.config import schema

    return schema.dataset_class("text_task").default_config()
