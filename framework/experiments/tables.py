"""Paper tables: a set of runs (rows x seeds), their results, and the written table.

A project registers a function `preset -> Table` in `registry.TABLES`. `run_table` trains
every (row, seed) in `<workdir>/<row>/seed_<seed>` (finished runs are reused, interrupted
ones resume from their checkpoints), then writes `<workdir>/results.json` and
`<workdir>/table.md`. The workdir may be remote (`gs://bucket/path`): files are read and
written through `etils.epath`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from etils import epath

from framework.config import schema
from framework.errors import ConfigError
from framework.train import metric_writing
from framework.train import workdir as workdir_lib

RESULT_FILE = "result.json"


def slugify(name: str) -> str:
    """A row name as a directory name and command-line token (lower case, `_`)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


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
        """Directory name: `Universal Transformer (ACT)` -> `universal_transformer_act`."""
        return slugify(self.name)


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


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`configs/parity/transformer.py:smoke` -> the ConfigDict that file builds."""
    path, _, arg = spec.partition(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return module.get_config(arg or None)


def _lookup(result: dict[str, Any], key: str) -> float | None:
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value)


def run_one(row: Row, seed: int, workdir: str) -> dict[str, Any]:
    path = os.path.join(workdir, row.slug, f"seed_{seed}")
    result_path = epath.Path(path) / RESULT_FILE
    if result_path.exists():
        return json.loads(result_path.read_text())
    config = row.config.copy_and_resolve_references()
    with config.unlocked():
        config.seed = seed
    if row.for_seed is not None:
        config = row.for_seed(config, seed, workdir)
    metric_writing.log(f"== {row.name}, seed {seed} -> {path}")
    start = time.perf_counter()
    out = schema.trainer(config)(config, path)
    if out.preempted:
        raise SystemExit(f"{row.name} seed {seed} stopped early; rerun to resume")
    result = {
        "row": row.name,
        "seed": seed,
        "steps": out.step,
        "eval": out.eval,
        "train": {k: v for k, v in out.train.items()},
        "num_params": out.num_params,
        "flops_per_example": out.flops_per_example,
        "train_examples_per_sec": (
            out.timed_steps * config.batch_size / out.timed_seconds if out.timed_seconds else 0.0
        ),
        "wall_seconds": time.perf_counter() - start,
    }
    if jax.process_index() == 0:
        result_path.write_text(json.dumps(result, indent=2))
    return result


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


def markdown(table: Table, summary: dict[str, Any]) -> str:
    lines = [
        f"# {table.title}",
        "",
        "| model | " + " | ".join(c.header for c in table.columns) + " |",
        "|---" * (len(table.columns) + 1) + "|",
    ]
    for row in table.rows:
        cells = []
        for column in table.columns:
            stat = summary[row.name].get(column.key)
            if stat is None:
                cells.append("–")
            elif column.spread and len(stat["values"]) > 1:
                mean, std = stat["mean"] * column.scale, stat["std"] * column.scale
                cells.append(f"{column.fmt.format(mean)} ± {column.fmt.format(std)}")
            else:
                cells.append(column.fmt.format(stat["mean"] * column.scale))
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    if table.notes:
        lines += ["", table.notes.strip()]
    return "\n".join(lines) + "\n"


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
    text = markdown(table, summary)
    if jax.process_index() == 0:
        out = {"title": table.title, "rows": summary, "runs": results}
        (epath.Path(workdir) / "results.json").write_text(json.dumps(out, indent=2))
        (epath.Path(workdir) / "table.md").write_text(text)
        if table.report is not None:
            table.report(table, summary, workdir)
    metric_writing.log(text)
    metric_writing.log(
        f"table written to {workdir}/table.md "
        f"({metric_writing.format_duration(time.perf_counter() - start)})"
    )
    return summary
