"""Converts public checkpoints into workdirs that `config.init_from` loads.

python -m launch.convert hf_t5 --input=DIR --workdir=OUT [--task=fine_food]
    A Hugging Face T5.1.1 checkpoint directory (`config.json` and `model.safetensors`,
    e.g. `huggingface-cli download google/t5-v1_1-small`) becomes OUT/checkpoints/0
    (its parameters, read with the `safetensors` package, no torch), OUT/spm.model (a
    copy of its `spiece.model`, when it has one), OUT/hf_config.json (its config.json)
    and OUT/config.json: the dense model of `configs/altup/finetune.py` of that shape
    fine-tuning on `--task` from OUT. It prints the command that fine-tunes it.
    The model is T5.1.1 as transformers computes it (the conversion and its checks:
    `framework/models/t5/hf_import.py`); a checkpoint it cannot map (tied embeddings,
    another activation, a missing tensor, ...) is one line naming the field or tensor,
    and nothing is written. See docs/checkpoints.md.
"""

from __future__ import annotations

import os

# Converting only: the host's accelerator, if any, stays free for a run.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import dataclasses  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

from absl import flags  # noqa: E402

from framework import app  # noqa: E402
from framework.errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS

FINETUNE_CONFIG = "configs/altup/finetune.py"
VOCAB_FILE = "spm.model"  # in OUT, beside the checkpoint
HF_CONFIG_FILE = "hf_config.json"


@dataclasses.dataclass(frozen=True)
class Conversion:
    """What `convert_hf_t5` wrote and the command that fine-tunes from it."""

    workdir: str
    checkpoint: str
    num_params: int
    size: str
    config_arg: str  # the `--config=` of the fine-tuning run
    overrides: dict[str, Any]  # its `--config.KEY=VALUE`s
    vocab_path: str | None

    def command(self, workdir: str = "runs/finetune") -> str:
        flags_ = [f"--config={self.config_arg}"]
        flags_ += [f"--config.{key}={value}" for key, value in self.overrides.items()]
        return " \\\n    ".join(["python -m launch.train", *flags_, f"--workdir={workdir}"])


def _local(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _check_fits(config, params: dict[str, Any]) -> None:
    """The preset's model has the converted parameters' tree and shapes (a bug otherwise)."""
    import flax
    import jax
    import jax.numpy as jnp

    from framework.config import schema

    model = schema.model_class(config.model_name)(config.model, {})
    batch = {
        "encoder_input_tokens": jnp.ones((1, 4), jnp.int32),
        "decoder_input_tokens": jnp.ones((1, 2), jnp.int32),
        "decoder_target_tokens": jnp.ones((1, 2), jnp.int32),
    }
    expected = jax.eval_shape(model.init, jax.random.key(0), batch)
    flat = flax.traverse_util.flatten_dict
    want = {"/".join(k): tuple(v.shape) for k, v in flat(expected).items()}
    have = {"/".join(k): tuple(v.shape) for k, v in flat(params).items()}
    if want != have:
        differ = sorted(set(want) ^ set(have)) or [k for k in want if want[k] != have[k]]
        raise ConfigError(
            f"{FINETUNE_CONFIG}'s {config.model_name} model does not take the converted "
            f"parameters (first difference: {differ[0]})"
        )


def convert_hf_t5(input_dir: str, workdir: str, task: str = "fine_food") -> Conversion:
    """Converts the Hugging Face T5.1.1 checkpoint `input_dir` into `workdir` (see the
    module docstring); checks everything before writing anything."""
    from etils import epath

    from configs.altup import t5 as t5_config
    from framework.config import loader
    from framework.data.text import vocabulary
    from framework.models.t5 import hf_import
    from framework.train import run_config
    from framework.train import workdir as workdir_lib

    if not input_dir:
        raise ConfigError("hf_t5 needs --input=DIR, a Hugging Face checkpoint directory")
    workdir_lib.check_workdir(workdir)
    out = epath.Path(workdir)
    for name in (run_config.CONFIG_FILE, "checkpoints"):
        if (out / name).exists():
            raise ConfigError(f"--workdir={workdir} already holds {name}; use a new --workdir")
    converted = hf_import.load(input_dir)
    dims = converted.dims
    sizes = {size: hf_import.SIZES[size] for size in t5_config.SIZES}
    fields = hf_import.model_fields(dims, sizes)
    size = fields.pop("size")

    vocab_path = None
    if converted.vocab_file:
        vocab = vocabulary.Vocabulary(converted.vocab_file)
        if vocab.vocab_size > dims.vocab_size:
            raise ConfigError(
                f"{converted.vocab_file}: {vocab.num_pieces} pieces and {vocab.extra_ids} "
                f"sentinels exceed config.json's vocab_size {dims.vocab_size}"
            )
        vocab_path = os.path.join(workdir, VOCAB_FILE)

    config_arg = f"{FINETUNE_CONFIG}:task={task},size={size},dense"
    overrides: dict[str, Any] = {"init_from": workdir}
    overrides.update({f"model.{key}": value for key, value in fields.items()})
    if vocab_path:
        overrides["dataset.vocab_path"] = vocab_path
    saved = dict(overrides, init_from=_local(workdir))
    if vocab_path:
        saved["dataset.vocab_path"] = _local(vocab_path)
    config = loader.load_config(config_arg, **saved)
    _check_fits(config, converted.params)

    checkpoint = hf_import.save(converted.params, workdir)
    if converted.vocab_file:
        with open(converted.vocab_file, "rb") as f:
            (out / VOCAB_FILE).write_bytes(f.read())
    (out / HF_CONFIG_FILE).write_text(json.dumps(converted.hf_config, indent=2) + "\n")
    run_config.write_config(config, workdir)
    return Conversion(
        workdir, checkpoint, converted.num_params, size, config_arg, overrides, vocab_path
    )


def convert_hf_t5_command() -> None:
    """The `hf_t5` command."""
    result = convert_hf_t5(FLAGS.input, FLAGS.workdir or "", FLAGS.task)
    print(
        f"{FLAGS.input}: T5.1.1 ({result.size} preset, {result.num_params:,} parameters) "
        f"-> {result.checkpoint}"
    )
    if not result.vocab_path:
        print(
            "note: no spiece.model beside the checkpoint; give its SentencePiece model with "
            "--config.dataset.vocab_path=..."
        )
    print(f"Fine-tune it on {FLAGS.task} with:\n  {result.command()}")
    print(f"(or --config={os.path.join(result.workdir, 'config.json')}, the same config)")


COMMANDS = {"hf_t5": convert_hf_t5_command}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise ConfigError(f"usage: python -m launch.convert {{{','.join(COMMANDS)}}} --flags")
    COMMANDS[argv[1]]()


def define_flags() -> None:
    """This command's flags, defined when it runs (not on import, so that tests can import
    `convert_hf_t5` beside `launch.prepare_data`, which defines its own `--input`)."""
    flags.DEFINE_string("input", "", "hf_t5: the Hugging Face checkpoint directory")
    flags.DEFINE_string("task", "fine_food", "hf_t5: the fine-tuning task of OUT/config.json")


if __name__ == "__main__":
    define_flags()
    app.run(main, positional=True)
