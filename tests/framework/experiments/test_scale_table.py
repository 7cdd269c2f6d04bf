"""The `scale` table: rows compiled in their own processes, a layout searched for where
the config's own does not fit, ratios to the group's baseline, cached results."""

import json

import pytest

from framework.config import registry
from framework.experiments import aot, scale_table
from framework.experiments.scale_table import ScaleRow

SMOKE = "configs/baselines/vit.py:smoke"


def test_a_row_compiles_in_its_own_process_and_is_reused(tmp_path, capsys):
    pytest.importorskip("libtpu")
    rows = [ScaleRow("Small", SMOKE, "v5e-4", "ViT", baseline=True)]
    table = scale_table.ScaleTable("test", rows)
    small = table.reproduce(str(tmp_path), parallel=1)["small/v5e-4"]
    assert small["fits"] and small["layout"] == "as configured" and small["attempts"] == 1
    assert small["mesh"] == {"data": 4, "fsdp": 1, "model": 1} and small["xla_flops_per_step"] > 0
    written = json.loads((tmp_path / "results.json").read_text())
    assert set(written["rows"]) == {"small/v5e-4"}
    assert "| Small | v5e-4 |" in (tmp_path / "table.md").read_text()
    capsys.readouterr()
    assert table.reproduce(str(tmp_path), parallel=1, only=["Small"])["small/v5e-4"]["cached"]
    assert "cached" in capsys.readouterr().out


def test_the_first_larger_layout_that_fits_is_reported(tmp_path, monkeypatch):
    # Scripted compiles (a real one is above): the configured layout and FSDP alone are
    # over HBM; FSDP with remat fits.
    tried = []

    def attempt(row, extra):
        tried.append(extra)
        fits = "--config.model.remat=block" in extra
        memory = {"params": 3 * 2**30, "opt_state": 3 * 2**30}  # 6 of 16 GiB: shard first
        return {
            "fits": fits, "num_devices": 8, "oom": None if fits else "needs 20 GiB",
            "memory": memory, "hbm_bytes": 16 * 2**30,
        }  # fmt: skip

    monkeypatch.setattr(scale_table, "_attempt", attempt)
    row = ScaleRow("Big", SMOKE, "v3-8", "ViT")
    result = scale_table.compile_row(row, tmp_path / "big.json")
    assert result["layout"] == "fsdp=8, remat=block" and result["attempts"] == 3
    assert result["configured"]["oom"] == "needs 20 GiB"
    assert tried[1] == ("--config.mesh.data=1", "--config.mesh.fsdp=8", "--config.mesh.model=1")
    never = {"fits": False, "num_devices": 8}
    monkeypatch.setattr(scale_table, "_attempt", lambda row, extra: dict(never))
    nothing = scale_table.compile_row(ScaleRow("Bigger", SMOKE, "v3-8", "ViT"), tmp_path / "b.json")
    assert nothing["attempts"] == 5 and nothing["fits"] is False
    assert "in any layout tried" in scale_table._verdict(nothing)
    # A config already laid out with FSDP and remat does not compile that layout again.
    tried.clear()

    def sharded_attempt(row, extra):
        tried.append(extra)
        fits = "--config.grad_accum_steps=2" in extra
        return {
            "fits": fits, "num_devices": 8, "mesh": {"data": 1, "fsdp": 8, "model": 1},
            "remat": "block", "grad_accum_steps": 2 if fits else 1,
            "memory": {"params": 2**30, "opt_state": 5 * 2**30}, "hbm_bytes": 16 * 2**30,
        }  # fmt: skip

    monkeypatch.setattr(scale_table, "_attempt", sharded_attempt)
    row = ScaleRow("Sharded", SMOKE, "v3-8", "ViT")
    sharded = scale_table.compile_row(row, tmp_path / "s.json")
    fsdp = ("--config.mesh.data=1", "--config.mesh.fsdp=8", "--config.mesh.model=1")
    assert tried == [(), (*fsdp, "--config.model.remat=block", "--config.grad_accum_steps=2")]
    assert sharded["layout"] == "fsdp=8, remat=block, 2 micro-batches"
    # Small state: activations are the problem, so recompute before sharding.
    labels = [label for label, _ in aot.ladder(16, state_fraction=0.01)]
    assert labels[0] == "remat=block" and labels[-1] == "fsdp=16, remat=block"


def test_report_ratios_against_the_baseline_of_the_same_group_and_target():
    def result(flops, seconds):
        return {
            "fits": True, "layout": "as configured", "mesh": {"data": 8, "fsdp": 1, "model": 1},
            "remat": "none", "grad_accum_steps": 1, "batch_size": 4, "num_params": 2e6,
            "memory": {"peak": 2**30}, "hbm_bytes": 16 * 2**30, "xla_flops_per_step": flops,
            "flops_ratio": 1.02, "roofline_seconds": seconds, "mfu_at_bound": 0.5,
            "compile_seconds": 3.0,
        }  # fmt: skip

    rows = [
        ScaleRow("Dense", "c", "v3-8", "T5-Base", baseline=True),
        ScaleRow("Wide", "c", "v3-8", "T5-Base"),
        ScaleRow("Other", "c", "v4-32", "T5-Base"),  # no baseline on v4-32
    ]
    results = {
        "dense/v3-8": result(4e9, 0.010),
        "wide/v3-8": result(12e9, 0.035),
        "other/v4-32": result(1e9, 0.001),
    }
    built = scale_table.build_report(scale_table.ScaleTable("t", rows), results)
    time_col = scale_table.HEADER.index("time vs baseline")
    flops_col = scale_table.HEADER.index("FLOPs vs baseline")
    assert built.values[1][time_col] == pytest.approx(3.5)
    assert built.values[1][flops_col] == pytest.approx(3.0)
    assert built.values[0][time_col] == pytest.approx(1.0)
    assert built.values[2][time_col] is None and built.shown[2][time_col] == "–"
    assert built.shown[1][scale_table.HEADER.index("XLA GFLOPs / example")] == "3.0"


def test_projects_register_the_papers_rows():
    quick = registry.TABLES.get("scale")("quick")
    names = {(row.name, row.target) for row in quick.rows}
    assert ("T5-Large AltUp K=2", "v3-8") in names and ("AdaTape-S/16", "v4-32") in names
    full = registry.TABLES.get("scale")("full")
    assert len(full.rows) == 4 * 5 * 2 + (5 + 2) * 2
    assert sum(row.baseline for row in full.rows) == 4 * 2 + 2 * 2
    for row in full.rows:  # each row's config builds (no compile)
        if row.target == "v3-8" and row.name.startswith("T5-XL"):
            from framework.config import loader

            config = loader.load_config(row.config)
            assert config.mesh.fsdp == -1 and config.model.remat == "block"
    assert "AltUp" in quick.notes and "AdaTape" in quick.notes
