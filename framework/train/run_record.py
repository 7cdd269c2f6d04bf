"""The run record: one `run.json` per workdir saying how a run ended and what it measured.

The trainer writes it when a run ends (finished, or stopped by SIGTERM), and the local
runner (`framework.launchers.local`) when a job's process failed or was stopped. Tables
and sweeps read every run through `read(workdir)`, so a table row and a sweep point are
recorded, reused and reported the same way. Workdirs written before the record
existed are read from what they hold: a table's `result.json`, else `metrics.jsonl` and
`config.json`.

Fields: `status` (done | stopped | failed | incomplete | not started), `error`, `step`,
`num_train_steps`, `train` / `eval` (the last logged metrics; train without its rates),
`num_params`, `flops_per_example`, `steps_per_sec` and `train_examples_per_sec` (between
the first and last log line of the last invocation: compilation and evaluation excluded),
`wall_seconds` (of the last invocation).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

import jax
from etils import epath

from framework.train import metric_writing, run_config

RECORD_FILE = "run.json"
LEGACY_TABLE_RESULT = "result.json"  # tables' per-run file before run.json

DONE, STOPPED, FAILED, INCOMPLETE, NOT_STARTED = (
    "done",
    "stopped",
    "failed",
    "incomplete",
    "not started",
)
_RATES = ("steps_per_sec", "examples_per_sec")


def _read_json(path: epath.Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scalars(row: dict[str, Any] | None) -> dict[str, float]:
    """The numeric metrics of a `metrics.jsonl` row (without `step`, `split` and rates)."""
    return {
        k: v
        for k, v in (row or {}).items()
        if k not in ("step", "split", *_RATES) and _is_number(v)
    }


def make(
    status: str,
    *,
    step: int,
    num_train_steps: int,
    train: dict[str, float] | None = None,
    evaluation: dict[str, float] | None = None,
    num_params: int = 0,
    flops_per_example: float = 0.0,
    steps_per_sec: float | None = None,
    batch_size: int = 0,
    wall_seconds: float | None = None,
    error: str = "",
) -> dict[str, Any]:
    """A record with every field, from what a run knows when it ends."""
    return {
        "status": status,
        "error": error,
        "step": int(step),
        "num_train_steps": int(num_train_steps),
        "train": scalars(train),
        "eval": dict(evaluation or {}),
        "num_params": int(num_params),
        "flops_per_example": float(flops_per_example),
        "steps_per_sec": steps_per_sec,
        "train_examples_per_sec": steps_per_sec * batch_size if steps_per_sec else 0.0,
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
    }


def write(workdir: str, record: dict[str, Any]) -> None:
    """Writes `record` as the workdir's `run.json` (process 0)."""
    if jax.process_index() != 0:
        return
    path = epath.Path(workdir)
    path.mkdir(parents=True, exist_ok=True)
    (path / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")


def clear(workdir: str) -> None:
    """Removes the record of an earlier invocation, as a run (re)starts in `workdir`."""
    path = epath.Path(workdir) / RECORD_FILE
    if path.exists():
        path.unlink()


def _metrics_rows(workdir: str) -> list[dict[str, Any]]:
    path = epath.Path(workdir) / metric_writing.METRICS_FILE
    try:
        text = path.read_text() if path.exists() else ""
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line torn by a crash
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def _from_metrics(workdir: str, num_train_steps: int | None) -> dict[str, Any]:
    """What `metrics.jsonl` says of a run without a record (running, killed, or old)."""
    rows = _metrics_rows(workdir)
    train = [r for r in rows if r.get("split") == "train"]
    evals = [r for r in rows if r.get("split") == "eval"]
    info = next((r for r in rows if r.get("split") == "info"), {})
    saved = _read_json(epath.Path(workdir) / run_config.CONFIG_FILE) or {}
    if num_train_steps is None:
        num_train_steps = int(saved.get("num_train_steps", 0))
    step = max((int(r["step"]) for r in train + evals), default=0)
    finished = bool(evals) and num_train_steps > 0 and int(evals[-1]["step"]) >= num_train_steps
    rates = [float(r["steps_per_sec"]) for r in train if "steps_per_sec" in r]
    # The first interval includes compilation.
    rate = statistics.median(rates[1:] if len(rates) > 1 else rates) if rates else None
    status = DONE if finished else INCOMPLETE if rows else NOT_STARTED
    return make(
        status,
        step=step,
        num_train_steps=num_train_steps,
        train=train[-1] if train else None,
        evaluation=scalars(evals[-1]) if evals else None,
        num_params=int(info.get("num_params", 0)),
        flops_per_example=float(info.get("flops_per_example", 0.0)),
        steps_per_sec=rate,
        batch_size=int(saved.get("batch_size", 0)),
    )


def _from_legacy_table_result(result: dict[str, Any]) -> dict[str, Any]:
    """A table's old `result.json` (every one of them was written by a finished run)."""
    examples_per_sec = result.get("train_examples_per_sec", 0.0)
    record = make(
        DONE,
        step=result.get("steps", 0),
        num_train_steps=result.get("steps", 0),
        train=result.get("train"),
        evaluation=result.get("eval"),
        num_params=result.get("num_params", 0),
        flops_per_example=result.get("flops_per_example", 0.0),
        wall_seconds=result.get("wall_seconds"),
    )
    record["train_examples_per_sec"] = examples_per_sec
    return record


def read(workdir: str, num_train_steps: int | None = None) -> dict[str, Any]:
    """The record of the run in `workdir` (status `not started` for an empty one).

    `num_train_steps` (default: the workdir's `config.json`) decides whether a run
    without a record has finished; a record whose run has since been extended (more
    steps asked for than it reached) reads as incomplete.
    """
    root = epath.Path(workdir)
    record = _read_json(root / RECORD_FILE)
    if record is None:
        legacy = _read_json(root / LEGACY_TABLE_RESULT)
        if legacy is not None:
            record = _from_legacy_table_result(legacy)
    if record is None:
        return _from_metrics(workdir, num_train_steps)
    if num_train_steps is not None and record["status"] == DONE:
        if record["step"] < num_train_steps:
            record = dict(record, status=INCOMPLETE)
    return record
