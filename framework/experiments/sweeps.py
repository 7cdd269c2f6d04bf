"""Config sweeps: expand a config file's `get_hyper`, run each point, tabulate the results.

`expand` turns `--config=FILE[:arg]` and its `get_hyper(hyper)` into `SweepPoint`s, each
checked against the config schema before anything runs (a bad key or value names the
point) and given a readable directory `WORKDIR/<slug>` (`lr.base=0.001,model.k=2`). A
point is one `python -m launch.train` process with `--config.KEY=VALUE` overrides, so a
sweep point is exactly a run a user could start by hand (`train_command`).

`framework.launchers.local.run_local` runs the unfinished points, N processes at a time;
`collect` reads each point's run record (`framework.train.run_record`, as tables do) and
`sweep_report.write_report` writes `sweep.md`, `sweep.csv`, `sweep.json` and `sweep.png`.
A point whose workdir a live run holds (its runner was killed, or another sweep runs it)
reads as `running`, with that run's pid and host (`holder`).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from typing import Any

import ml_collections

from framework.config import loader, schema
from framework.errors import ConfigError
from framework.experiments import hyper, report
from framework.launchers import local
from framework.train import run_record
from framework.train import workdir as workdir_lib

MAX_SLUG = report.MAX_SLUG
DONE, FAILED, STOPPED = run_record.DONE, run_record.FAILED, run_record.STOPPED
RUNNING = local.RUNNING


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
    return report.slug(
        ",".join(parts),
        keep="._=,+-",
        default="base",
        max_length=MAX_SLUG,
        identity=repr(point.swept),
    )


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


def jobs(sweep: Sweep, python: str = sys.executable) -> list[local.Job]:
    """The sweep's points as jobs for `framework.launchers.local.run_local`."""
    return [
        local.Job(
            p.slug, p.index, p.workdir, tuple(train_command(sweep, p, python)), p.num_train_steps
        )
        for p in sweep.points
    ]


# --------------------------------------------------------------------------------------
# Reading a point's results.
# --------------------------------------------------------------------------------------


def point_result(point: SweepPoint) -> dict[str, Any]:
    """The point's run record with the point's name, index and overrides; status `running`
    and `holder` ('pid P on host H') while a live run holds its workdir."""
    record = run_record.read(point.workdir, point.num_train_steps)
    if record["status"] != DONE:
        holder = workdir_lib.holder(point.workdir)
        if holder is not None:
            record = dict(record, status=RUNNING, error="", holder=holder.describe())
    return {
        "point": point.slug,
        "index": point.index,
        "overrides": {k.removeprefix(hyper.PREFIX): v for k, v in point.point.overrides},
        **record,
        "num_train_steps": point.num_train_steps,
    }


def collect(sweep: Sweep) -> list[dict[str, Any]]:
    return [point_result(p) for p in sweep.points]
