"""Tiny text data the text-data tests share: generated files and a SentencePiece model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from framework.data.text import vocabulary

VOCAB_PIECES = 300


def generated_lines(rng: np.random.Generator, n: int) -> list[str]:
    """Lines of made-up words over the letters a-j (the letters tfds mock text uses)."""
    syllables = [a + b for a in "bcdfghj" for b in "aei"]
    words = ["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(400)]
    return [" ".join(rng.choice(words, size=rng.integers(3, 16))) for _ in range(n)]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, str]:
    """Paths of `train` (two files), `eval` text files and a SentencePiece `model`."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    paths = {}
    for name, n in (("train_a", 1500), ("train_b", 1500), ("eval", 300)):
        paths[name] = os.path.join(root, f"{name}.txt")
        with open(paths[name], "w") as f:
            f.write("\n".join(generated_lines(rng, n)) + "\n")
    paths["train"] = os.path.join(root, "train_*.txt")
    paths["model"] = vocabulary.train_vocabulary(
        os.path.join(root, "spm.model"),
        VOCAB_PIECES,
        files=[paths["train_a"], paths["train_b"]],
        hard_vocab_limit=False,
    )
    return paths
