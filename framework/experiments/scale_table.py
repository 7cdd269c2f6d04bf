"""The `scale` table: the papers' full-size configs compiled for the papers' hardware.

  python -m launch.reproduce scale --preset=quick|full --workdir=DIR [--parallel=2]

Each row is one `launch.compile` command a user could run by hand (a config at full size
on generated data of the real shapes, and a target): its parameters, mesh, per-device
peak memory against HBM, whether it fits, XLA's FLOPs per example against the model's
analytical count, the roofline step time, and the ratio of that time and of the FLOPs to
the row's baseline (dense T5 or ViT of the same size on the same target). When the
config's own layout does not fit, the table tries other layouts in turn (`aot.ladder`:
FSDP over every device when the state is large, block rematerialisation, then 2 and 4
micro-batches) and reports the first that fits. Every figure is a compile-time
estimate, not a measured step time; the papers' own claims are printed beside them.

Projects contribute rows: a function `preset -> list[ScaleRow]` registered in
`registry.SCALE_ROWS` (their manifests' `scale rows` kind), whose docstring states the
paper's claim those rows bear on (printed under the table). Each compile runs in its own
process (`--parallel` at a time) and its report is kept as `DIR/<row>/<target>.json`,
so an interrupted table resumes and a rerun only tabulates.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import subprocess
import sys
import threading
import time
from typing import Any

from etils import epath

from framework.config import loader, registry
from framework.errors import ConfigError
from framework.experiments import aot, report, tables
from framework.train import metric_writing

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class ScaleRow:
    """One config compiled for one target."""

    name: str  # e.g. `T5-Large AltUp K=2`
    config: str  # `configs/baselines/vit.py:B/16,data=random`
    target: str  # `v3-8`
    group: str  # rows of a group on the same target compare with its baseline
    baseline: bool = False
    overrides: tuple[str, ...] = ()  # extra `--config.X=V` flags

    @property
    def slug(self) -> str:
        return f"{tables.row_slug(self.name)}/{report.slug(self.target, lower=True)}"


@dataclasses.dataclass
class ScaleTable:
    """The rows of every project for a preset; `reproduce` compiles and tabulates them."""

    title: str
    rows: list[ScaleRow]
    notes: str = ""

    def reproduce(self, workdir: str, parallel: int = 1, only: list[str] | None = None) -> Any:
        table = tables.select_rows(self, only) if only else self
        return run(table, workdir, max(1, parallel))


def _command(row: ScaleRow, extra: tuple[str, ...]) -> list[str]:
    return [
        sys.executable, "-m", "launch.compile", f"--config={row.config}",
        f"--target={row.target}", "--json", *row.overrides, *extra,
    ]  # fmt: skip


def _key(row: ScaleRow) -> str:
    """What a cached result must match: the command and the config it resolves to today
    (so a changed preset layout or recipe is compiled again)."""
    config = loader.load_config(row.config).to_json(sort_keys=True)
    digest = hashlib.sha1(config.encode()).hexdigest()[:12]
    return " ".join(_command(row, ())[1:]) + f" (config {digest})"


def _attempt(row: ScaleRow, extra: tuple[str, ...]) -> dict[str, Any]:
    """One compile in its own process: its JSON report, or {"error": line}."""
    start = time.perf_counter()
    done = subprocess.run(_command(row, extra), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode in (0, 1) and done.stdout.strip().startswith("{"):
        out = json.loads(done.stdout)
        out["wall_seconds"] = seconds
        return out
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return {"error": lines[-1] if lines else f"exit status {done.returncode}"}


def compile_row(row: ScaleRow, path: epath.Path) -> dict[str, Any]:
    """The row's compile report (`cached` when `path` holds one for the same command),
    with `layout`: `as configured` or the first of `aot.layouts_to_try` that fits."""
    key = _key(row)
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("command") == key:
            return {**cached, "cached": True}
    result = _attempt(row, ())
    attempts = [result]
    result["layout"] = "as configured"
    if not result.get("fits", True) and "error" not in result:
        for label, extra in aot.layouts_to_try(result):
            found = _attempt(row, extra)
            attempts.append(found)
            if found.get("fits"):
                result = {**found, "layout": label, "configured": attempts[0]}
                break
    result = {**result, "command": key, "attempts": len(attempts)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def run(table: ScaleTable, workdir: str, parallel: int) -> dict[str, dict[str, Any]]:
    """Compiles every row not already in `workdir` (`parallel` processes at a time), then
    writes table.md / table.csv / results.json there."""
    root = epath.Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    start, lock, finished = time.perf_counter(), threading.Lock(), [0]
    results: dict[str, dict[str, Any]] = {}

    def one(row: ScaleRow) -> None:
        result = compile_row(row, root / f"{row.slug}.json")
        with lock:
            results[row.slug] = result
            finished[0] += 1
            elapsed = time.perf_counter() - start
            eta = elapsed / finished[0] * (len(table.rows) - finished[0])
            metric_writing.log(
                f"[{finished[0]}/{len(table.rows)}] {row.name} on {row.target}: {_verdict(result)}"
                f" | ETA {metric_writing.format_duration(eta)}"
            )

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for future in [pool.submit(one, row) for row in table.rows]:
            future.result()
    written = build_report(table, results)
    report.write(written, workdir)
    metric_writing.log(written.markdown())
    metric_writing.log(
        f"table written to {workdir}/table.md "
        f"({metric_writing.format_duration(time.perf_counter() - start)})"
    )
    return results


def _verdict(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    if not result.get("fits"):
        return f"does not fit ({result.get('oom') or 'over HBM'}) in any layout tried"
    peak = result["memory"].get("peak", 0) / GIB
    layout = "" if result["layout"] == "as configured" else f" with {result['layout']}"
    cached = ", cached" if result.get("cached") else ""
    return (
        f"fits{layout}, peak {peak:.1f} GiB ({100 * result['peak_fraction']:.0f}%), "
        f"compiled in {result['compile_seconds']:.0f} s{cached}"
    )


def _mesh_text(result: dict[str, Any]) -> str:
    mesh = " ".join(f"{k}={v}" for k, v in result["mesh"].items() if v > 1) or "1 device"
    extra = [f"remat={result['remat']}"] if result["remat"] != "none" else []
    if result["grad_accum_steps"] > 1:
        extra.append(f"{result['grad_accum_steps']} micro-batches")
    return ", ".join([mesh, *extra])


HEADER = [
    "model", "target", "params (M)", "layout", "peak GiB / HBM", "fits",
    "XLA GFLOPs / example", "XLA / analytical", "roofline ms / step", "MFU at bound",
    "time vs baseline", "FLOPs vs baseline", "compile s",
]  # fmt: skip


def build_report(table: ScaleTable, results: dict[str, dict[str, Any]]) -> report.Report:
    baselines = {
        (row.group, row.target): results.get(row.slug) for row in table.rows if row.baseline
    }
    values, shown = [], []
    for row in table.rows:
        r = results.get(row.slug, {"error": "not compiled"})
        if "error" in r:
            cells = [row.name, row.target, *([None] * (len(HEADER) - 3)), r["error"]]
            values.append(cells)
            shown.append([report.cell(c) for c in cells])
            continue
        base = baselines.get((row.group, row.target)) or {}
        per_example = (r.get("xla_flops_per_step") or 0) / r["batch_size"] or None
        time_ratio = _ratio(r.get("roofline_seconds"), base.get("roofline_seconds"))
        flops_ratio = _ratio(r.get("xla_flops_per_step"), base.get("xla_flops_per_step"))
        layout = _mesh_text(r) + ("" if r["layout"] == "as configured" else " (found)")
        peak = r["memory"].get("peak")
        row_values = [
            row.name, row.target, r["num_params"] / 1e6, layout,
            None if peak is None else peak / GIB, bool(r["fits"]),
            None if per_example is None else per_example / 1e9, r.get("flops_ratio"),
            None if r.get("roofline_seconds") is None else 1e3 * r["roofline_seconds"],
            r.get("mfu_at_bound"), time_ratio, flops_ratio, r["compile_seconds"],
        ]  # fmt: skip
        values.append(row_values)
        shown.append([
            row.name, row.target, f"{r['num_params'] / 1e6:,.0f}", layout,
            "–" if peak is None else f"{peak / GIB:.1f} / {r['hbm_bytes'] / GIB:.0f}",
            "yes" if r["fits"] else f"no: {r.get('oom') or 'over HBM'}",
            _fmt(row_values[6], "{:.1f}"), _fmt(row_values[7], "{:.2f}"),
            _fmt(row_values[8], "{:.0f}"), _fmt(row_values[9], "{:.0%}"),
            _fmt(time_ratio, "{:.2f}x"), _fmt(flops_ratio, "{:.2f}x"),
            f"{r['compile_seconds']:.0f}",
        ])  # fmt: skip
    return report.Report(
        name="table",
        title=table.title,
        header=HEADER,
        values=values,
        shown=shown,
        notes=table.notes,
        payload={"title": table.title, "rows": results},
        json_name="results.json",
    )


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value and base else None


def _fmt(value: float | None, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


NOTES = """Compile-time estimates from XLA for the target (`launch.compile`): nothing ran.
Peak: XLA's per-device buffers (arguments, outputs not aliased to donated inputs,
temporaries, program). XLA / analytical: XLA's FLOPs of the compiled train step over
3 x the model's forward count (matmuls and attention; elementwise work and
rematerialised recomputation make it exceed 1). Roofline: max(FLOPs / peak FLOP/s,
HBM bytes / bandwidth) per device; communication is not counted, so real steps are
slower. MFU at bound: the analytical FLOPs over that time at the chip's peak. A layout
marked (found) is the first that fits of FSDP over every device (when parameters and
optimizer state take a quarter of HBM or more), remat=block, and 2 or 4 micro-batches,
when the config's own did not."""


@registry.TABLES.register("scale")
def scale_table(preset: str) -> ScaleTable:
    """Every project's scale rows for `preset` (`quick`: the headline sizes; `full`: all)."""
    rows: list[ScaleRow] = []
    for name in registry.SCALE_ROWS.names():
        rows.extend(registry.SCALE_ROWS.get(name)(preset))
    if not rows:
        raise ConfigError(f"no scale rows for preset {preset!r}; presets: quick, full")
    claims = [
        registry.SCALE_ROWS.get(name).__doc__.strip()
        for name in registry.SCALE_ROWS.names()
        if registry.SCALE_ROWS.get(name).__doc__
    ]
    notes = NOTES + "\n\nThe papers' claims:\n" + "\n".join(f"- {c}" for c in claims)
    return ScaleTable(f"Scale: full-size configs compiled for their hardware ({preset})",
                      rows, notes)  # fmt: skip
