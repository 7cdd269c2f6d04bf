"""T5.1.1 (+ AltUp) span-corruption pre-training, the AltUp paper's recipe.

The argument is a comma-separated list of tokens, in any order:
  size:    tiny | mini | small | base | large | xl   (default small)
  variant: dense | altup | recycled | sequence        (default altup)
  k=K (blocks, altup/recycled; default 2), active=alternating|same,
  compute=original|predicted (altup/recycled: the layer runs on the active block as
  it came in, the paper's, or on its prediction, as Gemma 3n does; default original),
  readout=concat|sum (altup: the decoder's K blocks concatenated into a K*d-wide final
  norm and output projection, the paper's, or summed into the dense model's d-wide
  ones; default concat),
  stride=S (sequence; default 2), bf16 (bfloat16 activations),
  width=W (every layer W times wider: d_model, d_ff and heads times W, d_kv kept; the
  paper's dense baseline with K-times wider layers is `dense,width=K`),
  data=c4 | data=random | data=english_mix | data=DIR (text files DIR/train.txt,
  DIR/eval.txt, DIR/spm.model; `english_mix`: the directory data/english_mix, about
  35 MB of English from `python -m launch.prepare_data english_mix`; `random`: random
  tokens at the recipe's shapes and T5's 32128-token vocabulary, for step-time
  benchmarks and `launch.compile`),
  target=v3-8 | v4-32 (the mesh, rematerialisation and micro-batches with which the
  size fits that slice at batch 256 in bfloat16, checked with `launch.compile`; see
  TARGET_LAYOUTS; without it: data parallel over every device).
Sizes small and up default to C4 (tfds `c4/en`) with the full recipe: inputs 512,
targets 114, batch 256, 500k steps, Adafactor, T5X rsqrt schedule (0.01 for the first
10k steps). C4 needs a SentencePiece model: T5's public one is
`--config.dataset.vocab_path=gs://t5-data/vocabs/cc_all.32000/sentencepiece.model`.
tiny and mini are CPU presets on the Shakespeare text (default DIR: data/shakespeare):
  python -m launch.prepare_data shakespeare --out_dir=data/shakespeare
  python -m launch.train --config=configs/altup/t5.py:tiny,altup --workdir=/tmp/x
Examples: `:small,altup,k=2`, `:base,recycled`, `:large,dense`, `:tiny,sequence,stride=3`,
`:small,dense,width=2,data=random`. The papers' full-size configs compiled for TPUs
(`python -m launch.reproduce scale`), e.g.
  python -m launch.compile --config=configs/altup/t5.py:xl,altup,bf16,data=random,target=v4-32 \
      --target=v4-32
"""

from __future__ import annotations

import os

import ml_collections

from framework.config import args, schema
from framework.data.text import english_mix
from framework.errors import ConfigError
from framework.models.t5 import layers as t5_layers

SIZES = ("tiny", "mini", "small", "base", "large", "xl")
VARIANTS = ("dense", "altup", "recycled", "sequence")
ACTIVE = ("alternating", "same")
COMPUTE = ("original", "predicted")
READOUT = ("concat", "sum")
CHOICES = {"active": ACTIVE, "compute": COMPUTE, "readout": READOUT}  # key=value tokens
CPU_SIZES = ("tiny", "mini")
DEFAULT_TEXT_DIR = "data/shakespeare"
# data=NAME tokens for prepared text directories (relative to the current directory).
TEXT_DATA = {"english_mix": (english_mix.DEFAULT_DIR, english_mix.PREPARE_COMMAND)}

# Shorter sequences, smaller batches and budgets for the CPU sizes (flattened keys).
CPU_BUDGETS = {
    "tiny": {
        "dataset.inputs_length": 64,
        "dataset.targets_length": 16,
        "dataset.num_eval_examples": 128,
        "batch_size": 16,
        "eval_batch_size": 32,
        "num_train_steps": 200,
        "lr.warmup_steps": 100,
        "log_every_steps": 20,
        "eval_every_steps": 100,
        "checkpoint_every_steps": 100,
    },
    "mini": {
        "dataset.inputs_length": 128,
        "dataset.targets_length": 32,
        "dataset.num_eval_examples": 1024,
        "batch_size": 32,
        "eval_batch_size": 64,
        "num_train_steps": 5_000,
        "lr.warmup_steps": 1_000,
        "log_every_steps": 100,
        "eval_every_steps": 1_000,
        "checkpoint_every_steps": 1_000,
    },
}


# Layouts that fit batch 256 (inputs 512, targets 114) in bfloat16 with the peak at most
# 90% of HBM, on the paper's latency hardware (TPUv3-8: 8 cores of 16 GiB) and on a
# v4-32 (16 chips of 32 GiB), by size, for width 1; a `width=2` dense model takes the
# layout of the next size up (it has about 4x the layer parameters). Found with
# `launch.compile` (`python -m launch.reproduce scale` reports each one's peak).
_SHARDED = {"mesh.data": 1, "mesh.fsdp": -1, "model.remat": "block"}
TARGET_LAYOUTS = {
    "v3-8": {
        "small": {},
        "base": {},
        "large": {**_SHARDED, "grad_accum_steps": 2},
        "xl": {**_SHARDED, "grad_accum_steps": 4},
    },
    "v4-32": {"small": {}, "base": {}, "large": {}, "xl": {**_SHARDED, "grad_accum_steps": 2}},
}
TARGETS = tuple(TARGET_LAYOUTS)

# The argument's fields (the shared `:arg` grammar, `framework/config/args.py`).
ARG_CHOICES = {"size": SIZES, "variant": VARIANTS, "target": ("", *TARGETS), **CHOICES}
ARG_DEFAULTS = {
    "size": "small",
    "variant": "altup",
    "k": 2,
    "active": "alternating",
    "compute": "original",
    "readout": "concat",
    "stride": 2,
    "width": 1,
    "bf16": False,
    "data": "",  # c4 | random | english_mix | DIR; default: c4, or DEFAULT_TEXT_DIR at CPU sizes
    "target": "",  # a TPU slice whose layout to use (TARGET_LAYOUTS)
}


def parse_arg(arg: str | None, **extra_fields) -> ml_collections.ConfigDict:
    """`'small,altup,k=2'` -> spec.size == 'small', spec.variant == 'altup', spec.k == 2;
    `extra_fields` are further fields with their defaults (e.g. the fine-tuning task)."""
    spec = args.parse_arg(arg, choices=ARG_CHOICES, **ARG_DEFAULTS, **extra_fields)
    for key in ("k", "stride", "width"):
        if spec[key] < 1:
            raise ValueError(f"config arg {key}={spec[key]} must be a positive integer")
    if not spec.data:
        spec.data = DEFAULT_TEXT_DIR if spec.size in CPU_SIZES else "c4"
    return spec


def text_data_dir(data: str) -> str:
    """The directory of a `data=` token: a TEXT_DATA name's (which must be prepared), or
    the token itself (a directory)."""
    if data not in TEXT_DATA:
        return data
    directory, command = TEXT_DATA[data]
    if not english_mix.is_prepared(directory):
        raise ConfigError(
            f"data={data} reads {directory}/{{train.txt,eval.txt,spm.model}}, which is not "
            f"prepared here; run `{command}` (from this directory) first"
        )
    return directory


def experiment_name(spec: dict) -> str:
    variant = spec["variant"]
    if variant in ("altup", "recycled"):
        variant += f"_k{spec['k']}" + ("_same" if spec["active"] == "same" else "")
        variant += "_predicted" if spec["compute"] == "predicted" else ""
    if variant.startswith("altup") and spec["readout"] == "sum":
        variant += "_sum_readout"
    elif variant == "sequence":
        variant += f"_s{spec['stride']}"
    wide = f"_{spec['width']}x_wide" if spec["width"] > 1 else ""
    return f"t5_{spec['size']}_{variant}{wide}"


def get_config(arg: str | None = None):
    return config_from_spec(parse_arg(arg))


def config_from_spec(spec: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The pre-training config of a parsed argument."""
    random_data = spec["data"] == "random"
    dataset_name = "random_seq2seq" if random_data else "span_corruption"
    c = schema.base_config(model_name="t5_altup", dataset_name=dataset_name)
    c.experiment_name = experiment_name(spec)
    c.trainer_name = "default"

    c.model.size = spec["size"]
    if spec["width"] > 1:
        d_model, d_ff, num_heads, _, _ = t5_layers.SIZES[spec["size"]]
        c.model.d_model = spec["width"] * d_model
        c.model.d_ff = spec["width"] * d_ff
        c.model.num_heads = spec["width"] * num_heads
    c.model.altup.variant = "none" if spec["variant"] == "dense" else spec["variant"]
    c.model.altup.k = spec["k"]
    c.model.altup.active = spec["active"]
    c.model.altup.compute_input = spec["compute"]
    c.model.altup.readout = spec["readout"]
    c.model.altup.sequence_stride = spec["stride"]
    c.model.dropout_rate = 0.0
    c.model.z_loss = 1e-4
    c.model.dtype = "bfloat16" if spec["bf16"] else "float32"

    if spec["data"] == "c4":
        c.dataset.source = "tfds"
        c.dataset.tfds_name = "c4/en:3.1.0"
    elif not random_data:
        directory = text_data_dir(spec["data"])
        c.dataset.source = "text_files"
        c.dataset.documents = "lines"
        c.dataset.train_files = os.path.join(directory, "train.txt")
        c.dataset.eval_files = os.path.join(directory, "eval.txt")
        c.dataset.vocab_path = os.path.join(directory, "spm.model")
    if not random_data:
        c.dataset.noise_density = 0.15
        c.dataset.mean_noise_span_length = 3.0
    c.dataset.inputs_length = 512
    c.dataset.targets_length = 114

    c.optimizer.name = "adafactor"
    c.optimizer.adafactor_decay_rate = 0.8
    c.optimizer.adafactor_clipping_threshold = 1.0
    c.optimizer.weight_decay = 0.0
    c.lr.factors = "constant*rsqrt_decay"
    c.lr.base = 1.0
    c.lr.warmup_steps = 10_000

    c.batch_size = 256
    c.eval_batch_size = 256
    c.num_train_steps = 500_000
    c.log_every_steps = 100
    c.eval_every_steps = 5_000
    c.checkpoint_every_steps = 5_000

    budget = CPU_BUDGETS.get(spec["size"])
    if budget:
        c.update_from_flattened_dict(budget)
    if spec["target"]:
        c.update_from_flattened_dict(target_layout(spec["size"], spec["width"], spec["target"]))
    return c


def target_layout(size: str, width: int, target: str) -> dict:
    """The flattened mesh / remat / micro-batch fields of `size` on `target`."""
    layouts = TARGET_LAYOUTS[target]
    if size not in layouts:
        raise ValueError(f"config arg target={target} has layouts for {', '.join(layouts)}")
    sizes = list(layouts)
    if width > 1:
        size = sizes[min(sizes.index(size) + 1, len(sizes) - 1)]
    return dict(layouts[size])


def get_hyper(hyper):
    """Dense T5, then AltUp and Recycled-AltUp at K = 2 and 3 (5 points) at the size the
    argument names.

    python -m launch.sweep --config=configs/altup/t5.py:tiny --workdir=runs/altup_sweep
    """
    return hyper.chainit(
        [
            hyper.sweep("config.model.altup.variant", ["none"]),
            hyper.product(
                [
                    hyper.sweep("config.model.altup.variant", ["altup", "recycled"]),
                    hyper.sweep("config.model.altup.k", [2, 3]),
                ]
            ),
        ]
    )
