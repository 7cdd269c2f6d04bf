"""Paper-table pieces that need no training: cached extra columns and the table report."""

from __future__ import annotations

import json

import pytest

from framework.experiments import tables


def test_cached_extra_reuses_its_rows_for_the_same_key_only(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"A": {"step_time_ms": float(len(calls))}}

    key = {"configs": {"A": {"batch": (8, 16)}}, "steps": 2}
    first = tables.cached_extra(str(tmp_path), "times.json", key, compute)
    again = tables.cached_extra(str(tmp_path), "times.json", key, compute)  # tuples as lists
    assert first == again == {"A": {"step_time_ms": 1.0}} and len(calls) == 1
    other = tables.cached_extra(str(tmp_path), "times.json", dict(key, steps=3), compute)
    assert other == {"A": {"step_time_ms": 2.0}} and len(calls) == 2
    saved = json.loads((tmp_path / "times.json").read_text())
    assert saved["key"]["steps"] == 3  # the file holds the latest key's rows


def test_table_report_shows_spread_and_writes_csv_and_results(tmp_path):
    columns = [
        tables.Column("eval.accuracy", "accuracy"),
        tables.Column("num_params", "parameters", "{:,.0f}", spread=False),
    ]
    table = tables.Table("T", [tables.Row("Model A", None, (0, 1))], columns, notes="n")
    summary = {
        "Model A": {
            "seeds": [0, 1],
            "eval.accuracy": {"mean": 0.5, "std": 0.1, "values": [0.4, 0.6]},
            "num_params": {"mean": 1234.0, "std": 0.0, "values": [1234.0, 1234.0]},
        }
    }
    report = tables.build_report(table, summary, {"Model A": []})
    assert "| Model A | 0.500 ± 0.100 | 1,234 |" in report.markdown()
    assert report.csv().splitlines() == ["model,accuracy,parameters", "Model A,0.5,1234.0"]
    paths = tables.report.write(report, str(tmp_path))
    assert sorted(paths) == ["results.json", "table.csv", "table.md"]
    assert json.loads((tmp_path / "results.json").read_text())["rows"] == summary


def test_seed_comparison_lists_every_seed_and_marks_differences_beyond_the_spread():
    # A: 0.50 / 0.52 / 0.54 (s = 0.02); B: 0.60 / 0.61 / 0.62 (s = 0.01): diff 0.09,
    # standard error sqrt(0.02^2/3 + 0.01^2/3) = 0.0129, so beyond; C: one seed, never.
    columns = [tables.Column("acc", "accuracy", "{:.2f}"), tables.Column("n", "n", spread=False)]
    rows = [tables.Row(name, None, ()) for name in ("A", "B", "C")]
    table = tables.Table("T", rows, columns, baseline="A")
    summary = {
        "A": {"acc": {"values": [0.50, 0.52, 0.54]}},
        "B": {"acc": {"values": [0.60, 0.61, 0.62]}},
        "C": {"acc": {"values": [0.70]}, "n": {"values": [1.0]}},
    }
    text = tables.seed_comparison(table, summary)
    assert "  - A: 0.50 / 0.52 / 0.54\n" in text
    assert "  - B: 0.60 / 0.61 / 0.62 (diff 0.09, **beyond**)" in text
    assert "  - C: 0.70 (diff 0.18, within)" in text
    assert "- n:" not in text  # columns without spread are not compared
    diff, beyond = tables.difference_beyond_spread([0.50, 0.52, 0.54], [0.51, 0.53, 0.49])
    assert diff == pytest.approx(0.01) and not beyond


def test_a_sigterm_during_a_runs_last_step_stops_the_table_before_the_next_run(
    tmp_path, monkeypatch
):
    import ml_collections

    from framework.train import trainer

    started = []

    def fake_trainer(config):
        def train(config, workdir):  # finished all its steps, but a SIGTERM came
            started.append(workdir)
            return trainer.RunResult(step=1, train={}, eval={}, stop_requested=True)

        return train

    monkeypatch.setattr(tables.schema, "trainer", fake_trainer)
    row = tables.Row("A", ml_collections.ConfigDict({"seed": 0}), (0, 1))
    with pytest.raises(SystemExit, match="stopped on SIGTERM after A seed 0; rerun"):
        tables.run_table(tables.Table("T", [row], []), str(tmp_path))
    assert len(started) == 1  # seed 1 was not started
