"""Experiment configs: the trainer's defaults, and checking a config against them.

Defaults live in one place: trainer fields here, model fields in the model class's
`default_config()`, dataset fields in the dataset builder's `default_config()`,
evaluator fields in the evaluator class's (`framework/train/evaluators`).
A config file starts from `base_config(model_name=..., dataset_name=...)`, which holds
every field with its default and is locked, so a misspelt key in a file or in a
`--config.FIELD=VALUE` override is an error. `resolve` checks a finished config again
(configs built by hand in code too), fills in anything missing and checks the values:
the trainer's here, the optimizer's and schedule's in `framework.train`, the model's,
the dataset's and each evaluator's in their classes' `check_config`, each error naming
the `config.` key.

Evaluation is `config.evals`, name -> entry: `type` (a registered evaluator), `split`
("" = the dataset's configured eval split), `every_steps` (0 = `eval_every_steps`; every
entry also runs at the last step) and the type's own fields. The default is one entry,
`metrics` (the model's metrics over the eval split). A config file adds an entry with
`add_eval(config, name, type, **fields)`, which fills in the type's defaults and keeps
the entry locked, so `--config.evals.NAME.FIELD=VALUE` overrides it like any field
(an entry cannot be added from the command line). `config.evals` is the whole list: a
config built in code may set it to any entries, and `resolve` checks each against its
type (an unknown type or key is an error naming `config.evals.NAME.KEY`).
"""

from __future__ import annotations

import re

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
    # Split each training batch into this many micro-batches inside the step (same
    # update as the whole batch; activation memory of one micro-batch).
    c.grad_accum_steps = 1
    # Devices per mesh axis (data, fsdp, model); one may be -1, the devices left over.
    # See framework/train/sharding.py and docs/scaling.md.
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "model": 1})
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

    c.evals = default_evals()

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


# ------------------------------------------------------------------------ evaluators

# Where `decode.*` went (config.json files written before config.evals hold it).
_DECODE_MOVED = (
    "config.decode is now an evaluator entry: schema.add_eval(config, 'decode', 'decoding', "
    "method=..., beam_size=..., alpha=..., max_length=...) in the config file, "
    "--config.evals.decode.FIELD=VALUE to override it"
)
# Fields of every config.evals entry: the registered `type`; the dataset `split` ("" = the
# dataset's configured eval split); `every_steps` (0 = the run's eval_every_steps; every
# evaluator also runs at the run's last step).
EVAL_COMMON_FIELDS = {"type": "", "split": "", "every_steps": 0}
_EVAL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def default_evals() -> ml_collections.ConfigDict:
    """The evaluators of a config that names none: the model's metrics on the eval split."""
    c = ml_collections.ConfigDict()
    c.metrics = ml_collections.ConfigDict(dict(EVAL_COMMON_FIELDS, type="metrics"))
    return c


def eval_entry(type_name: str, where: str, **fields) -> ml_collections.ConfigDict:
    """A full, checked `config.evals` entry of evaluator `type_name` with `fields` set.

    `where` (e.g. `config.evals.decode`) names the entry in errors.
    """
    if not type_name:
        raise ConfigError(
            f"{where}.type is not set; known: {', '.join(registry.EVALUATORS.names())}"
        )
    try:
        cls = registry.EVALUATORS.get(type_name)
    except ConfigError as e:
        raise ConfigError(f"{where}.type: {e}") from None
    entry = ml_collections.ConfigDict(EVAL_COMMON_FIELDS)
    entry.update(cls.default_config())
    entry.type = type_name
    for key, value in fields.items():
        if key not in entry:
            known = ", ".join(sorted(entry.keys()))
            raise ConfigError(f"unknown config key {where}.{key} ({type_name}); known: {known}")
        try:
            entry[key] = value
        except TypeError:
            expected = type(entry[key]).__name__
            raise ConfigError(f"{where}.{key}={value!r}: expected a {expected}") from None
    if not isinstance(entry.split, str):
        raise ConfigError(f"{where}.split must be a split name or '', got {entry.split!r}")
    if entry.every_steps < 0:
        raise ConfigError(f"{where}.every_steps must be >= 0, got {entry.every_steps}")
    cls.check_config(entry, where)
    entry.lock()
    return entry


def add_eval(config: ml_collections.ConfigDict, name: str, type_name: str, **fields) -> None:
    """Adds (or replaces) `config.evals.<name>`: evaluator `type_name` with its defaults
    and `fields`; locked like the rest of a config file's config."""
    entry = eval_entry(type_name, _eval_where(name), **fields)
    with config.evals.unlocked():
        config.evals[name] = entry


def _eval_where(name: str) -> str:
    where = f"config.evals.{name}"
    if not isinstance(name, str) or not _EVAL_NAME.fullmatch(name):
        raise ConfigError(f"{where}: an entry's name must be a Python identifier")
    return where


def _resolve_evals(evals: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Every entry checked against its type's defaults and filled in."""
    out = ml_collections.ConfigDict()
    plain: dict[str, str] = {}  # type -> the entry with unprefixed metric names
    for name, entry in evals.items():
        where = _eval_where(name)
        if not isinstance(entry, (dict, ml_collections.ConfigDict)):
            raise ConfigError(f"{where} must be an entry with a type, got {entry!r}")
        fields = dict(entry)
        out[name] = eval_entry(fields.pop("type", ""), where, **fields)
        if not out[name].split:
            other = plain.setdefault(out[name].type, name)
            if other != name:
                raise ConfigError(
                    f"{where} and config.evals.{other} would write the same metrics "
                    f"({out[name].type} on the eval split); give one of them a split"
                )
    return out


def _check_keys(
    config: ml_collections.ConfigDict,
    defaults: ml_collections.ConfigDict,
    where: str,
    skip: tuple[str, ...] = (),
) -> None:
    for key in config.keys():
        if key in skip:
            continue
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
    if "decode" in config:
        raise ConfigError(_DECODE_MOVED)
    defaults = full_defaults(config.model_name, config.dataset_name)
    evals = _resolve_evals(config.get("evals", defaults.evals))
    _check_keys(config, defaults, "config.", skip=("evals",))
    resolved = _merge(defaults, config)
    resolved.evals = evals
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
    if c.grad_accum_steps <= 0 or c.batch_size % c.grad_accum_steps:
        raise ConfigError(
            f"config.grad_accum_steps={c.grad_accum_steps} must be positive and divide "
            f"config.batch_size={c.batch_size}"
        )
    from framework.train import optimizers, schedules, sharding  # framework.train imports us

    sharding.check_mesh_config(c.mesh)

    optimizers.check_config(c.optimizer)
    schedules.check_config(c.lr, c.num_train_steps)
