"""A sweep's report (sweep.md, sweep.csv, sweep.json, sweep.png) from its points' records."""

from __future__ import annotations

import collections
import io
from typing import Any

from framework.experiments import hyper, report
from framework.experiments.sweeps import DONE, Sweep, format_value


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
        if r.get("holder"):  # running in another process: which
            status += f" ({r['holder']})"
        row += [r["steps_per_sec"], r["step"], status]
        rows.append(row)
    return header, rows


def _exact(value: Any) -> Any:
    """A swept value as it was given (1.0 stays 1.0 in the table)."""
    return None if value is None else format_value(value)


def _overrides_text(overrides: dict[str, Any]) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in overrides.items())


def build(
    sweep: Sweep, results: list[dict[str, Any]], metric: str = "", plot: bool = True
) -> report.Report:
    """The sweep's report: one row per point, and the main metric's plot."""
    header, rows = table_rows(sweep, results)
    counts = collections.Counter(r["status"] for r in results)
    preamble = []
    if sweep.common_overrides:
        preamble += [f"Every point: {_overrides_text(sweep.common_overrides)}", ""]
    preamble.append(f"{len(results)} point(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    payload = {
        "config": sweep.config_arg,
        "common_overrides": sweep.common_overrides,
        "swept": sweep.swept_keys,
        "points": results,
    }
    return report.Report(
        name="sweep",
        title=f"Sweep: {sweep.config_arg}",
        header=header,
        values=rows,
        preamble=preamble,
        payload=payload,
        png=plot_metric(sweep, results, main_metric(results, metric)) if plot else None,
    )


def markdown(sweep: Sweep, results: list[dict[str, Any]]) -> str:
    return build(sweep, results, plot=False).markdown()


def write_report(sweep: Sweep, results: list[dict[str, Any]], metric: str = "") -> dict[str, str]:
    """Writes sweep.md, sweep.csv, sweep.json (and sweep.png with matplotlib)."""
    return report.write(build(sweep, results, metric), sweep.workdir)


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
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
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
