"""Config sweeps: expand a config file's `get_hyper`, run each point, tabulate the results.

`expand` turns `--config=FILE[:arg]` and its `get_hyper(hyper)` into `SweepPoint`s, each
checked against the config schema before anything runs (a bad key or value names the
point) and given a readable directory `WORKDIR/<slug>` (`lr.base=0.001,model.k=2`). A
point is one `python -m launch.train` process with `--config.KEY=VALUE` overrides, so a
sweep point is exactly a run a user could start by hand (`train_command`).

`run_local` runs the unfinished points, N processes at a time (on a GPU host each with
its own devices), resuming interrupted ones from their checkpoints; `collect` reads
each point's workdir (`metrics.jsonl`, and `sweep_status.json` for failures) and
`write_report` writes `sweep.md`, `sweep.csv`, `sweep.json` and `sweep.png`. A point is
finished when its `metrics.jsonl` has an evaluation at its last step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import re
import statistics
import sys
from typing import Any

import ml_collections
from etils import epath

from framework.config import loader, schema
from framework.errors import ConfigError
from framework.experiments import hyper
from framework.train import metric_writing

STATUS_FILE = "sweep_status.json"
MAX_SLUG = 120

DONE, FAILED, STOPPED, INCOMPLETE, NOT_STARTED = (
    "done",
    "failed",
    "stopped",
    "incomplete",
    "not started",
)


@dataclasses.dataclass
class SweepPoint:
    index: int  # 1-based, in get_hyper's order
    point: hyper.Point
    slug: str
    workdir: str
    num_train_steps: int


@dataclasses.dataclass
class Sweep:
    config_arg: str  # `FILE[:arg]`, as given to --config
    common_overrides: dict[str, Any]  # --config.X=V given to the sweep: every point gets them
    workdir: str
    points: list[SweepPoint]

    @property
    def swept_keys(self) -> list[str]:
        """The keys that name points, in first-seen order."""
        keys: dict[str, None] = {}
        for p in self.points:
            keys.update(dict.fromkeys(k for k, _ in p.point.swept))
        return list(keys)


# --------------------------------------------------------------------------------------
# Expansion.
# --------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A value as `--config.KEY=` takes it (ml_collections parses it by the field's type)."""
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return repr(tuple(value))
    raise ConfigError(
        f"{value!r} ({type(value).__name__}) cannot be given on the command line; sweep over "
        "numbers, strings, booleans or tuples"
    )


def _slug_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "_".join(_slug_value(v) for v in value)
    return format_value(value)


def slug(point: hyper.Point) -> str:
    """A point's directory name from its swept overrides: `lr.base=0.001,model.k=2`.

    Depends only on the point's own overrides, so a point keeps its directory when the
    sweep grows. Characters unsafe in paths become `_`; a long name is cut and suffixed
    with a hash of the overrides.
    """
    parts = [f"{k.removeprefix(hyper.PREFIX)}={_slug_value(v)}" for k, v in point.swept]
    text = re.sub(r"[^A-Za-z0-9._=,+-]", "_", ",".join(parts)) or "base"
    if len(text) > MAX_SLUG:
        digest = hashlib.sha1(repr(point.swept).encode()).hexdigest()[:10]
        text = f"{text[: MAX_SLUG - 11]}-{digest}"
    return text


def load_points(config_arg: str, module: Any) -> list[hyper.Point]:
    """The points the config file's `get_hyper(hyper[, arg])` defines."""
    path, has_arg, arg = config_arg.partition(":")
    get_hyper = getattr(module, "get_hyper", None)
    if not callable(get_hyper):
        raise ConfigError(f"--config={config_arg}: the file defines no get_hyper(hyper) function")
    takes_arg = len(inspect.signature(get_hyper).parameters) > 1
    try:
        value = get_hyper(hyper, arg if has_arg else None) if takes_arg else get_hyper(hyper)
    except Exception as e:
        raise ConfigError(loader.describe_exception(e, path)) from None
    return hyper.points(value)


def expand(
    config_arg: str,
    base: ml_collections.ConfigDict,
    module: Any,
    workdir: str,
    common_overrides: dict[str, Any] | None = None,
) -> Sweep:
    """Every point of the sweep, checked against the config schema, with its directory.

    `base` is the config `--config` built (overrides included); `module` the loaded
    config file. Raises a one-line ConfigError naming the first bad point.
    """
    points = load_points(config_arg, module)
    common = dict(common_overrides or {})
    expanded: list[SweepPoint] = []
    by_slug: dict[str, int] = {}
    for index, point in enumerate(points, start=1):
        where = f"sweep point {index} of {len(points)} ({point.describe()})"
        try:
            for key, value in point.overrides:
                if key.removeprefix(hyper.PREFIX) in common:
                    raise ConfigError(f"{key} is also given as --{key} to the sweep")
                format_value(value)
            config = base.copy_and_resolve_references()
            for key, value in point.overrides:
                loader.set_field(config, key, value)
            resolved = schema.resolve(config)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        name = slug(point)
        if name in by_slug:
            raise ConfigError(
                f"{where}: its directory name {name!r} is that of point {by_slug[name]}; "
                "make the values differ in more than punctuation"
            )
        by_slug[name] = index
        expanded.append(
            SweepPoint(
                index, point, name, os.path.join(workdir, name), int(resolved.num_train_steps)
            )
        )
    return Sweep(config_arg, common, workdir, expanded)


def train_command(sweep: Sweep, point: SweepPoint, python: str = sys.executable) -> list[str]:
    """The `launch.train` command line that runs `point`."""
    overrides = [*((f"config.{k}", v) for k, v in sweep.common_overrides.items())]
    overrides += list(point.point.overrides)
    return [
        python,
        "-m",
        "launch.train",
        f"--config={sweep.config_arg}",
        f"--workdir={point.workdir}",
        *(f"--{key}={format_value(value)}" for key, value in overrides),
    ]


# --------------------------------------------------------------------------------------
# Reading a point's results.
# --------------------------------------------------------------------------------------


def _read_json(path: epath.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_metrics(workdir: str) -> list[dict[str, Any]]:
    path = epath.Path(workdir) / metric_writing.METRICS_FILE
    rows = []
    try:
        text = path.read_text() if path.exists() else ""
    except OSError:
        return []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def _scalars(row: dict[str, Any] | None) -> dict[str, float]:
    if not row:
        return {}
    return {k: v for k, v in row.items() if k not in ("step", "split") and _is_number(v)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def point_result(point: SweepPoint) -> dict[str, Any]:
    """What a point's workdir says: status, last step, final train/eval metrics, steps/s."""
    rows = _read_metrics(point.workdir)
    train = [r for r in rows if r.get("split") == "train"]
    evals = [r for r in rows if r.get("split") == "eval"]
    last_eval = evals[-1] if evals else None
    step = max((int(r["step"]) for r in train + evals), default=0)
    finished = last_eval is not None and int(last_eval["step"]) >= point.num_train_steps
    rates = [float(r["steps_per_sec"]) for r in train if "steps_per_sec" in r]
    # The first interval includes compilation.
    steps_per_sec = statistics.median(rates[1:] if len(rates) > 1 else rates) if rates else None
    recorded = _read_json(epath.Path(point.workdir) / STATUS_FILE) or {}
    if finished:
        status, error = DONE, ""
    elif recorded.get("status") in (FAILED, STOPPED):
        status, error = recorded["status"], recorded.get("error", "")
    else:
        status, error = (INCOMPLETE if rows else NOT_STARTED), ""
    train_metrics = _scalars(train[-1] if train else None)
    for key in ("steps_per_sec", "examples_per_sec"):
        train_metrics.pop(key, None)
    return {
        "point": point.slug,
        "index": point.index,
        "overrides": {k.removeprefix(hyper.PREFIX): v for k, v in point.point.overrides},
        "status": status,
        "error": error,
        "step": step,
        "num_train_steps": point.num_train_steps,
        "train": train_metrics,
        "eval": _scalars(last_eval),
        "steps_per_sec": steps_per_sec,
        "seconds": recorded.get("seconds"),
    }


def collect(sweep: Sweep) -> list[dict[str, Any]]:
    return [point_result(p) for p in sweep.points]
