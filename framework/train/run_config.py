"""The config a workdir's run was started with (`config.json`), and what a rerun may change.

A workdir belongs to one run, and a rerun continues that run: `check_config` compares a
resumed run's config with the saved `config.json`. Only the run-length and cadence
fields (`RUN_LENGTH_FIELDS`, each evaluator's `every_steps`) and the layout fields
(`LAYOUT_FIELDS`: the mesh, micro-batching, rematerialisation) may change, unless the user
accepts other changes knowingly (`--accept_config_changes`); every change is recorded
in `config_changes.jsonl`, and `config.json` then describes the run that continues.
A `config.json` written before `config.evals` existed is read in today's shape
(`upgrade_saved`), so old runs resume and evaluate.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import ml_collections
from absl import flags
from etils import epath

from framework.config import schema
from framework.errors import ConfigError
from framework.train import metric_writing

CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.jsonl"

# Fields a rerun may change without --accept_config_changes: how long the run trains and
# how often it logs, evaluates and checkpoints; none changes what a step computes.
# (A longer `num_train_steps` does stretch a schedule that decays over the run.)
RUN_LENGTH_FIELDS = (
    "num_train_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "async_checkpointing",
    "compute_flops",
)
# Fields that change how a step is laid out on the devices, not what it computes (the
# same update up to float rounding): a rerun may change them, e.g. resume on another mesh.
LAYOUT_FIELDS = ("mesh", "grad_accum_steps", "model.remat")

ACCEPT_FLAG = "accept_config_changes"
if ACCEPT_FLAG not in flags.FLAGS:  # a launch module may define it before this is imported
    flags.DEFINE_bool(
        ACCEPT_FLAG,
        False,
        "Resume a workdir with a config that differs from its saved config.json in more "
        "than the run-length and cadence fields; each change is recorded in "
        f"WORKDIR/{CHANGES_FILE}.",
    )


def accept_config_changes_flag() -> bool:
    """`--accept_config_changes` when flags are parsed (a launch command), else False."""
    return flags.FLAGS.is_parsed() and bool(flags.FLAGS[ACCEPT_FLAG].value)


# --------------------------------------------------------------------------------------
# Comparing two configs.
# --------------------------------------------------------------------------------------


def _flatten(tree: Any, prefix: str = "config") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}"))
        return out
    return {prefix: tree}


_ABSENT = object()


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """`{"config.lr.base": (old, new), ...}` for every leaf that differs (absent included)."""
    a, b = _flatten(saved), _flatten(new)
    return {
        key: (a.get(key, _ABSENT), b.get(key, _ABSENT))
        for key in sorted(set(a) | set(b))
        if a.get(key, _ABSENT) != b.get(key, _ABSENT)
    }


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def _jsonable(value: Any) -> Any:
    return None if value is _ABSENT else value


def format_changes(changes: dict[str, tuple[Any, Any]], limit: int = 10) -> str:
    shown = [f"{k}: {_show(old)} -> {_show(new)}" for k, (old, new) in changes.items()]
    more = len(shown) - limit
    return ", ".join(shown[:limit]) + (f" and {more} more" if more > 0 else "")


def _is_free(key: str) -> bool:
    """A run-length, cadence or layout field (an evaluator's `every_steps` too)."""
    top = key.split(".")
    layout = any(
        key == f"config.{name}" or key.startswith(f"config.{name}.") for name in LAYOUT_FIELDS
    )
    return (
        layout
        or key in {f"config.{name}" for name in RUN_LENGTH_FIELDS}
        or (len(top) == 4 and top[1] == "evals" and top[3] == "every_steps")
    )


# --------------------------------------------------------------------------------------
# The saved config: written, read, upgraded, checked on resume.
# --------------------------------------------------------------------------------------


def _as_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return json.loads(config.to_json_best_effort(sort_keys=True))


def _write_atomically(path: epath.PathLike, text: str) -> None:
    """Writes `path` whole or not at all: a temporary file, then renamed over `path`.

    Through epath, so also on a remote workdir (where the rename is a copy and a delete;
    a reader still never sees a half-written file).
    """
    path = epath.Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    text = config.to_json_best_effort(indent=2, sort_keys=True) + "\n"
    _write_atomically(epath.Path(workdir) / CONFIG_FILE, text)


def upgrade_saved(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config in today's shape: one written before `config.evals` existed gets
    the default evaluators, and its `decode.*` (decoding at every evaluation when
    `decode.at_eval`) becomes the `decode` entry of type `decoding` or is dropped."""
    if "evals" in saved:
        return saved
    upgraded = dict(saved, evals=schema.default_evals().to_dict())
    decode = upgraded.pop("decode", None)
    if isinstance(decode, dict) and decode.get("at_eval"):
        fields = {k: v for k, v in decode.items() if k != "at_eval"}
        upgraded["evals"]["decode"] = dict(schema.EVAL_COMMON_FIELDS, type="decoding", **fields)
    return upgraded


def saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was started (or last continued) with, from its
    `config.json`; a ConfigError naming the file when there is none or it is unreadable."""
    path = epath.Path(workdir) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path} does not exist: no run in {workdir}; give --config")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path} is unreadable ({e}); give --config") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} holds no config (a {type(saved).__name__}); give --config")
    return ml_collections.ConfigDict(upgrade_saved(saved))


def check_config(
    config: ml_collections.ConfigDict,
    workdir: str,
    resumed_step: int,
    accept_changes: bool = False,
) -> None:
    """Refuses a resumed run whose config differs from the saved one, then saves it.

    With `resumed_step` 0 (nothing to resume) the config is simply written. Otherwise
    the differing values from `config.json` outside `RUN_LENGTH_FIELDS` are a ConfigError
    listing them, unless `accept_changes` (a field only one side has, added or removed
    by a code change, is not refused); every change that goes ahead is appended to
    `config_changes.jsonl` with the time and step, and `config.json` is rewritten.
    """
    path = epath.Path(workdir) / CONFIG_FILE
    if resumed_step and path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            metric_writing.log(f"note: {path} is unreadable ({e}); writing it anew")
            saved = None
        if isinstance(saved, dict):
            changes = config_changes(upgrade_saved(saved), _as_dict(config))
            # A key on one side only is a field the code added or removed since the run
            # started, not a choice of the user's: noted and recorded, not refused.
            refused = {
                k: (old, new)
                for k, (old, new) in changes.items()
                if not _is_free(k) and old is not _ABSENT and new is not _ABSENT
            }
            if refused and not accept_changes:
                raise ConfigError(
                    f"{workdir} holds a run (step {resumed_step}) started with another "
                    f"config: {format_changes(refused)}; rerun with its config, use another "
                    "--workdir, or pass --accept_config_changes to continue it with these "
                    "changes"
                )
            if changes:
                _record_changes(workdir, resumed_step, changes, sorted(refused))
                note = ""
                if (
                    "config.num_train_steps" in changes
                    and not config.lr.get("decay_steps", 0)
                    and "decay" in str(config.lr.get("factors", ""))
                ):
                    note = "; the learning-rate decay now spans the new num_train_steps"
                metric_writing.log(
                    f"note: continuing from step {resumed_step} with config changes "
                    f"{format_changes(changes)} (recorded in {CHANGES_FILE}){note}"
                )
    write_config(config, workdir)


def _record_changes(workdir: str, step: int, changes: dict, accepted: list[str]) -> None:
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "step": step,
        "changes": {k: [_jsonable(old), _jsonable(new)] for k, (old, new) in changes.items()},
        "accepted_with_flag": accepted,
    }
    with (epath.Path(workdir) / CHANGES_FILE).open("a") as f:
        f.write(json.dumps(entry) + "\n")
