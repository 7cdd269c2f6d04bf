"""Paper tables: a set of runs (rows x seeds), their records, and the written table.

A project registers a function `preset -> Table` in `registry.TABLES`. `run_table` trains
every (row, seed) in `<workdir>/<row>/seed_<seed>` (finished runs are reused, interrupted
ones resume from their checkpoints), reads every run's record (`run.json`, the same
`framework.train.run_record` sweeps read), then writes `table.md`, `table.csv` and
`results.json` in `<workdir>` through the report layer (`report.py`). The workdir may be
remote (`gs://bucket/path`): files are read and written through `etils.epath`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from etils import epath

from framework.config import schema
from framework.errors import ConfigError
from framework.experiments import report
from framework.launchers import local
from framework.train import metric_writing, run_record
from framework.train import workdir as workdir_lib

RUN_CONFIG_FILE = "table_config.json"  # a run's config, for `jobs`


def row_slug(name: str) -> str:
    """A row's directory name: `Universal Transformer (ACT)` -> `universal_transformer_act`."""
    return report.slug(name, keep="", lower=True)


@dataclasses.dataclass
class Row:
    name: str
    config: ml_collections.ConfigDict
    seeds: tuple[int, ...] = (0, 1, 2)
    # Optional: (config with the seed set, seed, table workdir) -> the run's config, for
    # what depends on the seed beyond config.seed (e.g. fine-tuning from that seed's
    # pre-trained run, trained first if absent).
    for_seed: Callable[[ml_collections.ConfigDict, int, str], ml_collections.ConfigDict] | None = (
        None
    )

    @property
    def slug(self) -> str:
        return row_slug(self.name)


@dataclasses.dataclass
class Column:
    """A column from each run's result: `eval.accuracy`, `num_params`, ..."""

    key: str
    header: str
    fmt: str = "{:.3f}"
    spread: bool = True  # show mean ± std over seeds
    scale: float = 1.0  # shown as value * scale (e.g. 1e-6 for millions)


@dataclasses.dataclass
class Table:
    title: str
    rows: list[Row]
    columns: list[Column]
    notes: str = ""  # markdown under the table: setup, the paper's claim
    # Optional extra step after training (e.g. side-by-side timings); returns
    # {row name: {key: value}} merged into the row summaries.
    extra: Callable[["Table", str], dict[str, dict[str, float]]] | None = None
    # Optional last step with the summary (e.g. plots): (table, summary, workdir).
    report: Callable[["Table", dict[str, Any], str], None] | None = None
    # Optional: the row every other row is compared with, per seed-spread column, under
    # the table (`seed_comparison`).
    baseline: str = ""


def pick_preset(table_name: str, presets: dict[str, Any], name: str) -> Any:
    """`presets[name]`, or the one-line error naming the table's known presets."""
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r} for {table_name}; known: {', '.join(presets)}")
    return presets[name]


def select_rows(table: Table, names: list[str]) -> Table:
    """`table` with only the rows named (by name or slug), in the table's order."""
    known = {row.name for row in table.rows} | {row.slug for row in table.rows}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"unknown row(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(repr(row.name) for row in table.rows)}"
        )
    wanted = set(names)
    rows = [row for row in table.rows if row.name in wanted or row.slug in wanted]
    return dataclasses.replace(table, rows=rows)


def _lookup(result: dict[str, Any], key: str) -> float | None:
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value)


def run_dir(workdir: str, row: Row, seed: int) -> str:
    """Where the table keeps the run of `row` with `seed`."""
    return os.path.join(workdir, row.slug, f"seed_{seed}")


def run_config(row: Row, seed: int, workdir: str) -> ml_collections.ConfigDict:
    """The config of `row`'s run with `seed` (`for_seed` applied)."""
    config = row.config.copy_and_resolve_references()
    with config.unlocked():
        config.seed = seed
    if row.for_seed is not None:
        config = row.for_seed(config, seed, workdir)
    return config


def jobs(table: Table, workdir: str, python: str = sys.executable) -> list[local.Job]:
    """Every run of the table as a `launch.train` process (for `local.run_local`).

    Each run's config is written as `<run>/table_config.json`, which `launch.train`
    loads as it loads any config file, so a table run is a run a user could start by
    hand. A row's `for_seed` runs here, in this process (e.g. a pre-training run that a
    fine-tuning row starts from is trained first, one after another).
    """
    out = []
    for row in table.rows:
        for seed in row.seeds:
            path = run_dir(workdir, row, seed)
            config = run_config(row, seed, workdir)
            spec = epath.Path(path) / RUN_CONFIG_FILE
            if jax.process_index() == 0:
                spec.parent.mkdir(parents=True, exist_ok=True)
                spec.write_text(json.dumps(config.to_dict(), indent=2, default=str) + "\n")
            command = (python, "-m", "launch.train", f"--config={spec}", f"--workdir={path}")
            name = f"{row.slug}/seed_{seed}"
            out.append(local.Job(name, len(out) + 1, path, command, config.num_train_steps))
    return out


def run_one(row: Row, seed: int, workdir: str) -> dict[str, Any]:
    """The record of `row` with `seed`, trained first unless a finished run is there."""
    path = run_dir(workdir, row, seed)
    labels = {"row": row.name, "seed": seed}
    record = run_record.read(path)
    if record["status"] == run_record.DONE:
        return {**labels, **record}
    config = run_config(row, seed, workdir)
    metric_writing.log(f"== {row.name}, seed {seed} -> {path}")
    out = schema.trainer(config)(config, path)
    if out.preempted:
        raise SystemExit(f"{row.name} seed {seed} stopped early; rerun to resume")
    if out.stop_requested:  # a SIGTERM during its last step or save: no next run
        raise SystemExit(f"stopped on SIGTERM after {row.name} seed {seed}; rerun to go on")
    return {**labels, **run_record.read(path)}


def cached_extra(
    workdir: str, file_name: str, key: Any, compute: Callable[[], dict[str, dict[str, float]]]
) -> dict[str, dict[str, float]]:
    """`compute()` (a table's extra columns, e.g. side-by-side timings), cached in
    `<workdir>/<file_name>` under `key` (anything JSON can hold: what the values depend
    on), so that a rerun reuses them as it reuses the runs; another key recomputes."""
    key = json.loads(json.dumps(key, default=str))  # as it reads back from the file
    path = epath.Path(workdir) / file_name  # epath: the workdir may be gs://...
    if path.exists():
        cached = json.loads(path.read_text())
        if isinstance(cached, dict) and cached.get("key") == key:
            metric_writing.log(f"reusing {file_name} from {workdir}")
            return cached["rows"]
    rows = compute()
    if jax.process_index() == 0:
        path.write_text(json.dumps({"key": key, "rows": rows}, indent=2))
    return rows


def summarize(table: Table, results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary = {}
    for row in table.rows:
        runs = results[row.name]
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
        for column in table.columns:
            values = [v for v in (_lookup(r, column.key) for r in runs) if v is not None]
            if values:
                entry[column.key] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "values": values,
                }
        summary[row.name] = entry
    return summary


def build_report(table: Table, summary: dict[str, Any], runs: dict[str, Any]) -> report.Report:
    """The table's report: one row per model, a column's mean (± std over seeds)."""
    values, shown = [], []
    for row in table.rows:
        stats = [summary[row.name].get(column.key) for column in table.columns]
        values.append([row.name, *(None if s is None else s["mean"] for s in stats)])
        cells = []
        for column, stat in zip(table.columns, stats):
            if stat is None:
                cells.append("–")
            elif column.spread and len(stat["values"]) > 1:
                mean, std = stat["mean"] * column.scale, stat["std"] * column.scale
                cells.append(f"{column.fmt.format(mean)} ± {column.fmt.format(std)}")
            else:
                cells.append(column.fmt.format(stat["mean"] * column.scale))
        shown.append([row.name, *cells])
    notes = table.notes.strip()
    if table.baseline:
        notes += "\n\n" + seed_comparison(table, summary)
    return report.Report(
        name="table",
        title=table.title,
        header=["model", *(column.header for column in table.columns)],
        values=values,
        shown=shown,
        notes=notes,
        payload={"title": table.title, "rows": summary, "runs": runs},
        json_name="results.json",
    )


def difference_beyond_spread(values: list[float], baseline: list[float]) -> tuple[float, bool]:
    """(mean(values) - mean(baseline), whether that exceeds twice its standard error).

    The standard error comes from the sample standard deviations over seeds
    (sqrt(s_a^2 / n_a + s_b^2 / n_b)); with one seed on either side nothing is beyond it.
    """
    diff = float(np.mean(values) - np.mean(baseline))
    if min(len(values), len(baseline)) < 2:
        return diff, False
    error = np.sqrt(np.var(values, ddof=1) / len(values) + np.var(baseline, ddof=1) / len(baseline))
    return diff, bool(abs(diff) > 2 * error)


def seed_comparison(table: Table, summary: dict[str, Any]) -> str:
    """Markdown under the table: every seed's value of the spread columns, and each row's
    difference from the baseline row, marked where it exceeds the seed spread."""
    lines = [
        f"Per seed (seeds in run order), and the difference from {table.baseline}: "
        "**beyond** where it exceeds twice its standard error over seeds, else within the "
        "seed spread:"
    ]
    base = summary.get(table.baseline, {})
    for column in (c for c in table.columns if c.spread):
        lines.append(f"- {column.header}:")
        for row in table.rows:
            stat = summary.get(row.name, {}).get(column.key)
            if stat is None:
                continue
            shown = " / ".join(column.fmt.format(v * column.scale) for v in stat["values"])
            line = f"  - {row.name}: {shown}"
            if row.name != table.baseline and column.key in base:
                diff, beyond = difference_beyond_spread(stat["values"], base[column.key]["values"])
                verdict = "**beyond**" if beyond else "within"
                line += f" (diff {column.fmt.format(diff * column.scale)}, {verdict})"
            lines.append(line)
    return "\n".join(lines)


def run_table(table: Table, workdir: str) -> dict[str, Any]:
    """Trains what is missing, then writes results.json and table.md in `workdir`."""
    workdir_lib.make_workdir(workdir)
    start = time.perf_counter()
    results = {row.name: [run_one(row, seed, workdir) for seed in row.seeds] for row in table.rows}
    summary = summarize(table, results)
    if table.extra is not None:
        for name, values in table.extra(table, workdir).items():
            for key, value in values.items():
                summary[name][key] = {"mean": float(value), "std": 0.0, "values": [value]}
    written = build_report(table, summary, results)
    if jax.process_index() == 0:
        report.write(written, workdir)
        if table.report is not None:
            table.report(table, summary, workdir)
    metric_writing.log(written.markdown())
    metric_writing.log(
        f"table written to {workdir}/table.md "
        f"({metric_writing.format_duration(time.perf_counter() - start)})"
    )
    return summary
