"""SentencePiece vocabulary: T5 ids, sentinels, exact round trip, the prepare_data command."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from framework.data.text.vocabulary import Vocabulary
from tests.framework.data.conftest import generated_lines

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_t5_special_ids_and_sentinels(corpus):
    vocab = Vocabulary(corpus["model"], extra_ids=7)
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.vocab_size == vocab.num_pieces + 7
    assert [vocab.sentinel(i) for i in range(3)] == [vocab.vocab_size - 1 - i for i in range(3)]
    assert min(vocab.sentinel(i) for i in range(7)) == vocab.num_pieces


def test_round_trip(corpus):
    vocab = Vocabulary(corpus["model"])
    lines = generated_lines(np.random.default_rng(1), 50)  # unseen in training
    ids = vocab.encode_batch(lines)
    assert [vocab.decode(i) for i in ids] == lines
    assert vocab.encode(lines[0]) == ids[0]
    assert all(0 < t < vocab.num_pieces for row in ids for t in row)


def test_decode_shows_sentinels_and_drops_control_ids(corpus):
    vocab = Vocabulary(corpus["model"])
    a, b = vocab.encode("baca"), vocab.encode("dehi")
    ids = a + [vocab.sentinel(0)] + b + [vocab.sentinel(1), vocab.eos_id, 0]
    assert vocab.decode(ids) == "baca<extra_id_0>dehi<extra_id_1>"


def test_prepare_data_vocab_command(corpus, tmp_path):
    output = str(tmp_path / "cmd.model")
    subprocess.run(
        [sys.executable, "-m", "launch.prepare_data", "vocab", f"--input={corpus['train']}"]
        + ["--vocab_size=200", f"--output={output}"],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    vocab = Vocabulary(output, extra_ids=0)
    assert vocab.vocab_size == 200 and vocab.eos_id == 1
    assert vocab.decode(vocab.encode("baca dehi")) == "baca dehi"


def test_prepare_data_shakespeare_reuses_outputs(corpus, tmp_path):
    """With its outputs present the command fetches nothing (idempotent, no network)."""
    for name, source in (("train.txt", "train_a"), ("eval.txt", "eval"), ("spm.model", "model")):
        with open(corpus[source], "rb") as f, open(tmp_path / name, "wb") as out:
            out.write(f.read())
    done = subprocess.run(
        [sys.executable, "-m", "launch.prepare_data", "shakespeare", f"--out_dir={tmp_path}"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert "train.txt" in done.stdout and "spm.model" in done.stdout
    assert sorted(os.listdir(tmp_path)) == ["eval.txt", "spm.model", "train.txt"]
