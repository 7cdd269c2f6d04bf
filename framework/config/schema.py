"""Experiment configs: the trainer's defaults, and checking a config against them.

Defaults live in one place: trainer fields here, model fields in the model class's
`default_config()`, dataset fields in the dataset builder's `default_config()`.
A config file starts from `base_config(model_name=..., dataset_name=...)`, which holds
every field with its default and is locked, so a misspelt key in a file or in a
`--config.FIELD=VALUE` override is an error. `resolve` checks a finished config again
(configs built by hand in code too), fills in anything missing and checks the values:
the trainer's here, the optimizer's and schedule's in `framework.train`, the model's and
the dataset's in their classes' `check_config`, each error naming the `config.` key.
"""

from __future__ import annotations

import ml_collections

from framework.config import registry
from framework.errors import ConfigError


def trainer_defaults() -> ml_collections.ConfigDict:
    """Every trainer-level field with its default."""
    c = ml_collections.ConfigDict()
    c.experiment_name = ""
    c.model_name = ""
    c.dataset_name = ""
    c.trainer_name = "default"
    c.seed = 0
    c.batch_size = 128  # global, over all processes and devices
    c.eval_batch_size = 256  # global
    c.num_train_steps = 1000
    c.log_every_steps = 50
    c.eval_every_steps = 500  # also evaluates at the last step; 0: only then
    c.checkpoint_every_steps = 500  # also at the last step and on SIGTERM
    c.keep_checkpoints = 3
    c.async_checkpointing = True
    c.compute_flops = True
    # Fine-tuning: start from the parameters of another run (its workdir, checkpoints
    # directory or one step's directory; local or gs://), with a fresh optimizer and step.
    c.init_from = ""

    # Evaluation by decoding (text-to-text tasks): at every evaluation, decode the eval
    # split, score it with the task's metrics and write the decodes (see decode_eval.py).
    c.decode = ml_collections.ConfigDict()
    c.decode.at_eval = False
    c.decode.method = "greedy"  # greedy | beam
    c.decode.beam_size = 4
    c.decode.alpha = 0.6  # beam length penalty: score / ((5 + length) / 6) ** alpha
    c.decode.max_length = 0  # 0: the dataset's targets_length

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adamw"  # adamw | sgd | adafactor
    c.optimizer.b1 = 0.9  # adamw beta1; sgd momentum
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.nesterov = False
    c.optimizer.weight_decay = 0.0
    c.optimizer.weight_decay_mask = "kernels"  # kernels (ndim > 1) | all
    c.optimizer.grad_clip_norm = 0.0  # global-norm clipping; 0 disables
    c.optimizer.adafactor_decay_rate = 0.8
    c.optimizer.adafactor_clipping_threshold = 1.0
    c.optimizer.adafactor_factored = True

    c.lr = ml_collections.ConfigDict()
    c.lr.factors = "constant*linear_warmup*cosine_decay"
    c.lr.base = 1e-3
    c.lr.warmup_steps = 0
    c.lr.decay_steps = 0  # 0: num_train_steps
    c.lr.end_factor = 0.0  # cosine / linear decay end, relative to base
    return c


def _check_keys(
    config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict, where: str
) -> None:
    for key in config.keys():
        if key not in defaults:
            raise ConfigError(
                f"unknown config key {where}{key!r}; known: {', '.join(sorted(defaults.keys()))}"
            )
        if isinstance(defaults[key], ml_collections.ConfigDict) and isinstance(
            config[key], ml_collections.ConfigDict
        ):
            _check_keys(config[key], defaults[key], f"{where}{key}.")


def _merge(
    defaults: ml_collections.ConfigDict, config: ml_collections.ConfigDict
) -> ml_collections.ConfigDict:
    merged = ml_collections.ConfigDict(defaults.to_dict(), type_safe=False)
    merged.update(ml_collections.ConfigDict(config.to_dict(), type_safe=False))
    return merged


def model_class(name: str):
    return registry.MODELS.get(name)


def dataset_class(name: str):
    return registry.DATASETS.get(name)


def full_defaults(model_name: str, dataset_name: str) -> ml_collections.ConfigDict:
    """Trainer, model and dataset defaults together."""
    c = trainer_defaults()
    c.model_name = model_name
    c.dataset_name = dataset_name
    c.model = model_class(model_name).default_config()
    c.dataset = dataset_class(dataset_name).default_config()
    return c


def base_config(model_name: str, dataset_name: str) -> ml_collections.ConfigDict:
    """The starting point of every config file: all fields, defaults, locked."""
    c = full_defaults(model_name, dataset_name)
    c.lock()
    return c


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks every key against the defaults and fills in the missing ones."""
    for name in ("model_name", "dataset_name"):
        if not config.get(name):
            raise ConfigError(f"config.{name} is not set")
    defaults = full_defaults(config.model_name, config.dataset_name)
    _check_keys(config, defaults, "config.")
    resolved = _merge(defaults, config)
    registry.TRAINERS.get(resolved.trainer_name)
    _check_values(resolved)
    model_class(resolved.model_name).check_config(resolved.model)
    dataset_class(resolved.dataset_name).check_config(resolved.dataset)
    resolved.lock()
    return resolved


def trainer(config: ml_collections.ConfigDict):
    """The registered trainer `config.trainer_name` names (the default if unset)."""
    return registry.TRAINERS.get(config.get("trainer_name") or trainer_defaults().trainer_name)


def _check_values(c: ml_collections.ConfigDict) -> None:
    positive = (
        "batch_size",
        "eval_batch_size",
        "num_train_steps",
        "log_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
    )
    for key in positive:
        if int(c[key]) <= 0:
            raise ConfigError(f"config.{key} must be positive, got {c[key]}")
    if c.eval_every_steps < 0:
        raise ConfigError(f"config.eval_every_steps must be >= 0, got {c.eval_every_steps}")
    if not 0 <= c.seed < 2**63:
        raise ConfigError(f"config.seed must be an integer in [0, 2**63), got {c.seed}")
    from framework.train import optimizers, schedules  # here: framework.train imports us

    if c.decode.method not in ("greedy", "beam"):
        raise ConfigError(f"config.decode.method must be greedy or beam, got {c.decode.method!r}")
    for key, least in (("beam_size", 1), ("max_length", 0)):
        if c.decode[key] < least:
            raise ConfigError(f"config.decode.{key} is out of range: {c.decode[key]}")
    optimizers.check_config(c.optimizer)
    schedules.check_config(c.lr, c.num_train_steps)
