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

import collections
import csv
import dataclasses
import glob
import hashlib
import inspect
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import ml_collections
from etils import epath

from framework import app, config_schema, hyper
from framework.errors import ConfigError
from framework.train import metric_writing
from framework.train import workdir as workdir_lib

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


def _set(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *parents, field = key.removeprefix(hyper.PREFIX).split(".")
    node = config
    for i, name in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            where = ".".join(["config", *parents[:i]])
            raise ConfigError(f"no config field {name!r} under {where}")
        node = node[name]
    if not isinstance(node, ml_collections.ConfigDict) or field not in node:
        raise ConfigError(f"no config field {key!r}")
    try:
        node[field] = value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}={value!r}: {e}") from None


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
        raise ConfigError(app.describe_exception(e, path)) from None
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
                _set(config, key, value)
            resolved = config_schema.resolve(config)
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


# --------------------------------------------------------------------------------------
# Running locally.
# --------------------------------------------------------------------------------------


def _gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def _has_tpu() -> bool:
    return bool(glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"))


def device_groups(parallel: int) -> list[dict[str, str]]:
    """The environment of each of `parallel` slots: on a GPU host, disjoint GPUs."""
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1, got {parallel}")
    gpus = _gpu_ids()
    if gpus:
        if parallel > len(gpus):
            raise ConfigError(
                f"--parallel={parallel} but this host has {len(gpus)} GPU(s), and each "
                "point needs its own; use --parallel of at most that"
            )
        per = len(gpus) // parallel
        return [
            {"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * per : (i + 1) * per])}
            for i in range(parallel)
        ]
    if parallel > 1 and _has_tpu():
        raise ConfigError(
            f"--parallel={parallel}: a TPU host's chips serve one process at a time; "
            "use --parallel=1"
        )
    return [{} for _ in range(parallel)]


def _error_line(log_text: str) -> str:
    """The line that says why a run failed: its `error: ...` line, else its last line."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    return lines[-1] if lines else "(no output)"


@dataclasses.dataclass
class _Running:
    point: SweepPoint
    process: subprocess.Popen
    slot: int
    log_path: str  # where the output goes while it runs (local)
    started: float


def _write_status(point: SweepPoint, status: str, error: str, seconds: float) -> None:
    path = epath.Path(point.workdir)
    path.mkdir(parents=True, exist_ok=True)
    record = {"status": status, "error": error, "seconds": round(seconds, 1)}
    (path / STATUS_FILE).write_text(json.dumps(record) + "\n")


class _Stop(Exception):
    pass


def run_local(
    sweep: Sweep,
    parallel: int = 1,
    log_name: str = "run.log",
    python: str = sys.executable,
    poll_seconds: float = 0.5,
    log: Callable[[str], None] = metric_writing.log,
) -> None:
    """Runs every unfinished point, `parallel` at a time; a failure does not stop the rest.

    Each point's output goes to `<point>/<log_name>` (`{host}` in it becomes the host
    name; a remote workdir gets the file when the point ends). SIGINT / SIGTERM stop the
    sweep: the running points get SIGTERM (the trainer checkpoints and exits) and are
    marked stopped; a rerun resumes them.
    """
    slots = device_groups(parallel)
    results = {r["point"]: r for r in collect(sweep)}
    todo = [p for p in sweep.points if results[p.slug]["status"] != DONE]
    done_before = len(sweep.points) - len(todo)
    log(
        f"sweep: {len(sweep.points)} point(s), {done_before} finished before, {len(todo)} to "
        f"run, {parallel} at a time -> {sweep.workdir}"
    )
    pending = collections.deque(todo)
    running: list[_Running] = []
    free = list(range(parallel))
    durations: list[float] = []
    counts = collections.Counter()
    log_name = log_name.replace("{host}", os.uname().nodename)
    scratch = tempfile.mkdtemp(prefix="sweep_logs_")

    def stop_handler(signum, frame):
        raise _Stop()

    previous = {s: signal.signal(s, stop_handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while pending or running:
            while pending and free:
                running.append(
                    _start(sweep, pending.popleft(), free.pop(0), slots, scratch, log_name, python)
                )
                log(
                    f"[{running[-1].point.index}/{len(sweep.points)}] started "
                    f"{running[-1].point.slug}"
                )
            time.sleep(poll_seconds)
            for job in [j for j in running if j.process.poll() is not None]:
                running.remove(job)
                free.append(job.slot)
                seconds = time.perf_counter() - job.started
                durations.append(seconds)
                status, error = _finish(job, log_name, seconds)
                counts[status] += 1
                remaining = len(pending) + len(running)
                eta = ""
                if remaining:
                    mean = sum(durations) / len(durations)
                    eta = f", ETA {metric_writing.format_duration(mean * remaining / parallel)}"
                what = f": {error}" if error else ""
                log(
                    f"[{job.point.index}/{len(sweep.points)}] {status} {job.point.slug} in "
                    f"{metric_writing.format_duration(seconds)}{what} ({remaining} left{eta})"
                )
    except _Stop:
        log(f"sweep: stopping {len(running)} running point(s) (SIGTERM; they checkpoint)")
        for job in running:
            job.process.send_signal(signal.SIGTERM)
        for job in running:
            try:
                job.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
            _finish(job, log_name, time.perf_counter() - job.started, stopped=True)
        raise KeyboardInterrupt from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"sweep: ran {len(todo)} point(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))


def _start(
    sweep: Sweep,
    point: SweepPoint,
    slot: int,
    slots: list[dict[str, str]],
    scratch: str,
    log_name: str,
    python: str,
) -> _Running:
    if workdir_lib.is_remote(point.workdir):
        log_path = os.path.join(scratch, f"{point.slug}.log")
    else:
        os.makedirs(point.workdir, exist_ok=True)
        log_path = os.path.join(point.workdir, log_name)
    env = {**os.environ, **slots[slot], "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as out:
        process = subprocess.Popen(
            train_command(sweep, point, python),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C reaches the sweep, which passes on SIGTERM
        )
    return _Running(point, process, slot, log_path, time.perf_counter())


def _finish(job: _Running, log_name: str, seconds: float, stopped: bool = False) -> tuple[str, str]:
    with open(job.log_path, errors="replace") as f:
        text = f.read()
    if workdir_lib.is_remote(job.point.workdir):
        target = epath.Path(job.point.workdir)
        target.mkdir(parents=True, exist_ok=True)
        (target / log_name).write_text(text)
    result = point_result(job.point)
    if result["status"] == DONE:
        status, error = DONE, ""
    elif stopped:
        status, error = STOPPED, "stopped with the sweep; a rerun resumes it"
    else:
        code = job.process.returncode
        status, error = FAILED, _error_line(text) + f" (exit status {code})"
    _write_status(job.point, status, error, seconds)
    return status, error


# --------------------------------------------------------------------------------------
# The report.
# --------------------------------------------------------------------------------------


def main_metric(results: list[dict[str, Any]], requested: str = "") -> str:
    """`eval.accuracy` when the points have it, else `eval.loss` (or `requested`)."""
    if requested:
        return requested
    keys = {f"eval.{k}" for r in results for k in r["eval"]}
    for candidate in ("eval.accuracy", "eval.loss", "eval.total_loss"):
        if candidate in keys:
            return candidate
    return sorted(keys)[0] if keys else "eval.loss"


def _lookup(result: dict[str, Any], key: str) -> Any:
    split, _, name = key.partition(".")
    if split in ("eval", "train"):
        return result[split].get(name)
    return result.get(key)


def table_rows(sweep: Sweep, results: list[dict[str, Any]]) -> tuple[list[str], list[list]]:
    """Header and rows: swept values, eval metrics, train loss, steps/s, status."""
    swept = [k.removeprefix(hyper.PREFIX) for k in sweep.swept_keys]
    eval_keys = sorted({k for r in results for k in r["eval"]})
    train_loss = "total_loss" if any("total_loss" in r["train"] for r in results) else "loss"
    header = ["point", *swept, *(f"eval.{k}" for k in eval_keys), f"train.{train_loss}"]
    header += ["steps/s", "step", "status"]
    rows = []
    for r in results:
        row = [r["index"], *(_exact(r["overrides"].get(k)) for k in swept)]
        row += [r["eval"].get(k) for k in eval_keys] + [r["train"].get(train_loss)]
        status = r["status"] + (f": {r['error']}" if r["error"] else "")
        row += [r["steps_per_sec"], r["step"], status]
        rows.append(row)
    return header, rows


def _exact(value: Any) -> Any:
    """A swept value as it was given (1.0 stays 1.0 in the table)."""
    return None if value is None else format_value(value)


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _overrides_text(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in overrides.items())


def markdown(sweep: Sweep, results: list[dict[str, Any]]) -> str:
    header, rows = table_rows(sweep, results)
    counts = collections.Counter(r["status"] for r in results)
    lines = [
        f"# Sweep: {sweep.config_arg}",
        "",
        *(
            [f"Every point: {_overrides_text(sweep.common_overrides)}", ""]
            if sweep.common_overrides
            else []
        ),
        f"{len(results)} point(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()),
        "",
        "| " + " | ".join(header) + " |",
        "|---" * len(header) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(sweep: Sweep, results: list[dict[str, Any]], metric: str = "") -> dict[str, str]:
    """Writes sweep.md, sweep.csv, sweep.json (and sweep.png with matplotlib)."""
    root = epath.Path(sweep.workdir)
    root.mkdir(parents=True, exist_ok=True)
    header, rows = table_rows(sweep, results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    written = {
        "sweep.md": markdown(sweep, results),
        "sweep.csv": buffer.getvalue(),
        "sweep.json": json.dumps(
            {
                "config": sweep.config_arg,
                "common_overrides": sweep.common_overrides,
                "swept": sweep.swept_keys,
                "points": results,
            },
            indent=2,
        )
        + "\n",
    }
    for name, text in written.items():
        (root / name).write_text(text)
    paths = {name: str(root / name) for name in written}
    plot = plot_metric(sweep, results, main_metric(results, metric))
    if plot is not None:
        (root / "sweep.png").write_bytes(plot)
        paths["sweep.png"] = str(root / "sweep.png")
    return paths


def plot_metric(sweep: Sweep, results: list[dict[str, Any]], metric: str) -> bytes | None:
    """PNG bytes: `metric` of the finished points against each swept value (None without
    matplotlib or finished points)."""
    finished = [r for r in results if r["status"] == DONE and _lookup(r, metric) is not None]
    keys = [k.removeprefix(hyper.PREFIX) for k in sweep.swept_keys]
    if not finished or not keys:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        xs = [r["overrides"].get(key) for r in finished]
        numeric = all(_is_number(x) for x in xs)
        labels = [] if numeric else sorted({str(x) for x in xs}, key=[str(x) for x in xs].index)
        # One line per setting of the other swept values, so interactions show.
        groups: dict[str, list[tuple[Any, float]]] = {}
        for r, x in zip(finished, xs):
            rest = ", ".join(f"{k}={r['overrides'].get(k)}" for k in keys if k != key)
            groups.setdefault(rest, []).append(
                (x if numeric else labels.index(str(x)), _lookup(r, metric))
            )
        for rest, pairs in groups.items():
            pairs.sort(key=lambda pair: pair[0])
            ax.plot(*zip(*pairs), marker="o", label=rest or None)
        if numeric:
            if min(xs) > 0 and max(xs) / min(xs) >= 10:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        if len(groups) > 1:
            ax.legend(fontsize=7)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sweep.config_arg}: {metric}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
