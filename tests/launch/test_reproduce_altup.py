"""`python -m launch.reproduce altup --preset=tiny` end to end on a generated corpus.

The table reads the corpus named by `ALTUP_DATA_DIR` (train.txt, eval.txt and a tiny
SentencePiece model made here), so nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import os
import subprocess

import numpy as np
import pytest

from framework.data.text import vocabulary
from framework.errors import ConfigError
from framework.experiments.tables import row_slug
from projects.altup import paper_tables as altup_tables
from tests.launch import cli

ROWS = [
    "T5 dense",
    "AltUp K=2",
    "AltUp K=2, sum readout",
    "Recycled-AltUp K=2",
    "Sequence-AltUp stride 2",
    "T5 dense 2x wide",
]


def write_corpus(root: str) -> str:
    """train.txt, eval.txt (lines of made-up words) and a 300-piece spm.model."""
    rng = np.random.default_rng(0)
    syllables = [a + b for a in "bcdfghjklm" for b in "aeiou"]
    words = ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(500)]
    os.makedirs(root, exist_ok=True)
    for name, lines in (("train.txt", 2000), ("eval.txt", 200)):
        with open(os.path.join(root, name), "w") as f:
            for _ in range(lines):
                f.write(" ".join(rng.choice(words, size=rng.integers(4, 20))) + "\n")
    vocabulary.train_vocabulary(
        os.path.join(root, "spm.model"),
        300,
        files=[os.path.join(root, "train.txt")],
        hard_vocab_limit=False,
    )
    return root


# The rows trained end to end (the others differ only in config, which
# test_altup_table_rows checks; their models and parameter counts are tested in
# tests/projects/altup/test_model.py).
TRAINED = ["T5 dense", "AltUp K=2"]


def reproduce(
    workdir: str, data_dir: str, table: str = "altup", rows=TRAINED, **extra_env: str
) -> subprocess.CompletedProcess:
    env = {**cli.env(devices=1), **extra_env}
    env[altup_tables.DATA_DIR_ENV] = data_dir
    return subprocess.run(
        cli.command(
            "launch.reproduce",
            table,
            "--preset=tiny",
            f"--rows={','.join(rows)}",
            f"--workdir={workdir}",
        ),
        cwd=cli.ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )


def result_mtimes(workdir: str) -> dict[str, float]:
    out = {}
    for root, _, files in os.walk(workdir):
        for name in files:
            if name in ("run.json", altup_tables.STEP_TIMES_FILE):
                out[os.path.join(root, name)] = os.path.getmtime(os.path.join(root, name))
    return out


def test_reproduce_altup_tiny_end_to_end_and_reuse(tmp_path):
    data_dir = write_corpus(str(tmp_path / "corpus"))
    workdir = str(tmp_path / "pretrain")
    first = reproduce(workdir, data_dir)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "== T5 dense, seed 0" in first.stdout

    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    rows = results["rows"]
    assert list(rows) == TRAINED
    for name in TRAINED:
        row = rows[name]
        assert row["seeds"] == [0]
        assert math.isfinite(row["eval.cross_entropy"]["mean"])
        assert 0.0 <= row["eval.accuracy"]["mean"] <= 1.0
        assert row["step_time_ms"]["mean"] > 0
        assert row["relative_step_time"]["mean"] > 0
    assert rows["T5 dense"]["relative_step_time"]["mean"] == pytest.approx(1.0)
    params = {name: rows[name]["num_params"]["mean"] for name in TRAINED}
    assert params["AltUp K=2"] > params["T5 dense"]  # the K-times wider embedding

    with open(os.path.join(workdir, "table.md")) as f:
        table = f.read()
    assert table.startswith("# AltUp, tiny preset")
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in lines[1:]] == TRAINED
    assert "step time vs dense" in lines[0] and "Paper's claim" in table

    before = result_mtimes(workdir)
    assert len(before) == len(TRAINED) + 1

    # The fine-tuning table starts from these runs (its DIR/pretrain) without retraining
    # them (run_one reuses finished runs, as any table's rerun does), fine-tunes on a
    # tiny polarity corpus, decodes and scores the held-out part.
    finetune_dir = os.path.dirname(workdir)
    polarity_dir = write_polarity(str(tmp_path / "polarity"))
    finetuned_rows = ["T5 dense"]  # one row: each costs a fine-tuning, a decoder and a timing
    third = reproduce(
        finetune_dir, data_dir, "altup_finetune", finetuned_rows, FINETUNE_DATA_DIR=polarity_dir
    )
    assert third.returncode == 0, third.stderr[-4000:]
    assert result_mtimes(workdir) == before  # the pre-training runs were reused
    assert third.stdout.count("== ") == 1 and "Parameters from " in third.stdout
    with open(os.path.join(finetune_dir, "results.json")) as f:
        finetuned = json.load(f)["rows"]
    assert list(finetuned) == finetuned_rows
    for name in finetuned_rows:
        assert 0.0 <= finetuned[name]["eval.polarity/accuracy"]["mean"] <= 100.0
        assert finetuned[name]["relative_step_time"]["mean"] > 0
        run = os.path.join(finetune_dir, row_slug(name), "seed_0")
        with open(os.path.join(run, "config.json")) as f:
            assert json.load(f)["init_from"] == os.path.join(workdir, row_slug(name), "seed_0")
        with open(os.path.join(run, "decodes", "polarity", "6.jsonl")) as f:
            decodes = [json.loads(line) for line in f]
        assert len(decodes) == 4 and {d["targets"] for d in decodes} == {"positive", "negative"}
    finetune_table = " ".join((tmp_path / "table.md").read_text().split())
    assert "polarity accuracy (%)" in finetune_table
    assert "(train 12, held out 4)" in finetune_table
    assert "one example is 25 points" in finetune_table
    assert "majority label (`negative`) scores 50.0%" in finetune_table
    check_evaluate(os.path.join(finetune_dir, row_slug("T5 dense"), "seed_0"))


def check_evaluate(run: str) -> None:
    """`launch.evaluate` on a fine-tuned run, from its own config.json: the same
    parameters and decoding give exactly the figures of the run's last eval."""
    with open(os.path.join(run, "decodes", "polarity", "6.jsonl")) as f:
        decoded_in_training = f.read()
    evaluated = cli.run("launch.evaluate", f"--workdir={run}")
    assert evaluated.returncode == 0, evaluated.stderr[-4000:]
    assert evaluated.stdout.startswith("step 6: ")
    with open(os.path.join(run, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    in_training = [r for r in records if r.get("split") == "eval"][-1]
    evaluation = [r for r in records if r.get("split") == "evaluate"]
    assert len(evaluation) == 1 and evaluation[0]["step"] == 6
    for key in ("polarity/accuracy", "accuracy", "cross_entropy"):
        assert evaluation[0][key] == pytest.approx(in_training[key], rel=1e-5), key
    with open(os.path.join(run, "decodes", "polarity", "6.evaluate.jsonl")) as f:
        assert f.read() == decoded_in_training
    assert os.listdir(os.path.join(run, "evaluate"))  # TensorBoard events

    from launch import evaluate  # its flags, for calling main in-process

    with cli.parsed_flags(["evaluate", f"--workdir={run}", "--checkpoint=5"]):
        with pytest.raises(ConfigError, match=r"--checkpoint=5: .* holds steps \[6\]"):
            evaluate.main()
    empty = os.path.join(os.path.dirname(run), "empty")
    with cli.parsed_flags(["evaluate", f"--workdir={empty}"]):
        with pytest.raises(ConfigError, match="config.json does not exist: no run in .*--config"):
            evaluate.main()


def write_polarity(root: str) -> str:
    """train.tsv / eval.tsv of the polarity format (label, tab, sentence)."""
    os.makedirs(root)
    words = {0: "dull flat tedious", 1: "bright warm moving"}
    for name, count in (("train", 12), ("eval", 4)):
        with open(os.path.join(root, f"{name}.tsv"), "w") as f:
            for i in range(count):
                f.write(f"{i % 2}\ta film so {words[i % 2]} .\n")
    return root


def test_altup_table_needs_a_prepared_data_dir(tmp_path, monkeypatch):
    """A directory named by ALTUP_DATA_DIR is used as it is: missing files are an error."""
    monkeypatch.setenv(altup_tables.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigError, match="lacks train.txt, eval.txt, spm.model"):
        altup_tables.altup_table("tiny")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        altup_tables.altup_table("huge")


def test_altup_table_rows(tmp_path, monkeypatch):
    """Same budget for every row; the wide row doubles d_model, d_ff and heads."""
    monkeypatch.setenv(altup_tables.DATA_DIR_ENV, write_corpus(str(tmp_path)))
    table = altup_tables.altup_table("quick")
    assert [row.name for row in table.rows] == ROWS
    configs = {row.name: row.config for row in table.rows}
    for config in configs.values():
        assert config.num_train_steps == table.rows[0].config.num_train_steps
        assert config.batch_size == table.rows[0].config.batch_size
        assert config.dataset.vocab_path == os.path.join(str(tmp_path), "spm.model")
    wide, dense = configs["T5 dense 2x wide"].model, configs["T5 dense"].model
    assert (wide.d_model, wide.d_ff, wide.num_heads) == (128, 256, 8)
    assert wide.get("d_kv") is None and dense.get("d_model") is None
    assert wide.altup.variant == dense.altup.variant == "none"
    assert configs["AltUp K=2"].model.altup.variant == "altup"
    assert configs["Sequence-AltUp stride 2"].model.altup.variant == "sequence"


def test_english_presets_pretrain_on_the_mix_and_fine_tune_on_fine_food(tmp_path, monkeypatch):
    """The fine_food presets: the altup table's english_* rows read the corpus the
    environment names; fine-tuning reads the fine_food folder FINETUNE_DATA_DIR names,
    at the preset's inputs length, scored by accuracy and macro-F1 against dense."""
    from framework.data.text import classification
    from projects.altup import finetune_table

    monkeypatch.setenv(altup_tables.DATA_DIR_ENV, write_corpus(str(tmp_path / "corpus")))
    food = str(tmp_path / "fine_food")
    pairs = {"train": [("tasty", "great")] * 6 + [("stale", "other")] * 3}
    pairs["eval"] = [("good", "great")] * 3 + [("bad", "other")]
    classification.write_task(food, "fine_food", pairs, source="test")
    monkeypatch.setenv(finetune_table.FINETUNE_DATA_DIR_ENV, food)

    pretraining = altup_tables.altup_table("english_quick")
    assert "span corruption on english_mix" in pretraining.title
    assert "Linux kernel documentation" in pretraining.notes
    table = finetune_table.altup_finetune_table("english_quick")
    assert [row.name for row in table.rows] == finetune_table.ROWS
    assert table.baseline == "T5 dense"
    assert [c.key for c in table.columns[:2]] == [
        "eval.fine_food/accuracy",
        "eval.fine_food/macro_f1",
    ]
    for row in table.rows:
        c = row.config
        assert (c.dataset.task, c.dataset.data_dir, c.dataset.inputs_length) == (
            "fine_food",
            food,
            finetune_table.PRESETS["english_quick"].inputs_length,
        )
        assert row.seeds == altup_tables.PRESETS["english_quick"].seeds
    notes = " ".join(table.notes.split())
    assert "(train 9, held out 4)" in notes and "majority label (`great`) scores 75.0%" in notes
