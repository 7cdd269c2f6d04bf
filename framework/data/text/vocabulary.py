"""SentencePiece vocabularies with T5's sentinel convention, and training new ones.

A `Vocabulary` wraps any SentencePiece `.model` file (T5's 32k model included) and
adds `extra_ids` sentinel ids on top of its pieces, as T5 does: the vocabulary size is
`pieces + extra_ids` and sentinel i is `vocab_size - 1 - i`, counted down from the top.
Models trained here follow T5's special ids (pad 0, eos 1, unk 2, no bos), because the
batches use 0 as padding.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np
import sentencepiece as spm

from framework.errors import ConfigError

T5_SPECIAL_IDS = {"pad_id": 0, "eos_id": 1, "unk_id": 2, "bos_id": -1}


def _read_bytes(path: str) -> bytes:
    """A local file, or a remote one (`gs://...`, e.g. T5's vocabulary) through tf.io."""
    if "://" not in path:
        with open(path, "rb") as f:
            return f.read()
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


class Vocabulary:
    """A SentencePiece model plus `extra_ids` sentinels counted down from the top."""

    def __init__(self, path: str, extra_ids: int = 100):
        if extra_ids < 0:
            raise ValueError(f"extra_ids must be >= 0, got {extra_ids}")
        proto = _read_bytes(path)
        self.path = path
        self.extra_ids = extra_ids
        self._sp = spm.SentencePieceProcessor(model_proto=proto)

    @property
    def num_pieces(self) -> int:
        """Pieces in the SentencePiece model (ids below this are SentencePiece's)."""
        return self._sp.get_piece_size()

    @property
    def vocab_size(self) -> int:
        """Pieces plus sentinels: the size of the model's embedding."""
        return self.num_pieces + self.extra_ids

    @property
    def pad_id(self) -> int:
        return self._sp.pad_id()

    @property
    def eos_id(self) -> int:
        return self._sp.eos_id()

    @property
    def unk_id(self) -> int:
        return self._sp.unk_id()

    def sentinel(self, i: int) -> int:
        """Id of sentinel i (T5's `<extra_id_i>`): vocab_size - 1 - i."""
        if not 0 <= i < self.extra_ids:
            raise ValueError(f"sentinel {i} out of range [0, {self.extra_ids})")
        return self.vocab_size - 1 - i

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without EOS."""
        return self._sp.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str], num_threads: int = -1) -> list[list[int]]:
        """Token ids of many texts (SentencePiece's own thread pool), without EOS."""
        return self._sp.encode(list(texts), out_type=int, num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; sentinels print as `<extra_id_i>`, pad and EOS as nothing."""
        parts: list[str] = []
        run: list[int] = []
        for i in np.asarray(list(ids), np.int64).tolist():
            if i >= self.num_pieces:
                parts.append(self._sp.decode(run))
                parts.append(f"<extra_id_{self.vocab_size - 1 - i}>")
                run = []
            else:
                run.append(i)
        parts.append(self._sp.decode(run))
        return "".join(parts)


def train_vocabulary(
    output: str,
    vocab_size: int,
    *,
    files: Sequence[str] = (),
    sentences: Iterable[str] | None = None,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    input_sentence_size: int = 2_000_000,
    seed: int = 0,
    hard_vocab_limit: bool = True,
    num_threads: int = 1,
) -> str:
    """Trains a SentencePiece model with T5's special ids; returns the `.model` path.

    `output` is the model path (`.../spm.model`) or its prefix; SentencePiece also
    writes the matching `.vocab`. Input is text `files` (one sentence per line) or an
    iterable of `sentences` (e.g. documents read from tfds). At most
    `input_sentence_size` sentences are sampled, with a fixed `seed`, so the same input
    gives the same pieces. Piece ids also depend on `num_threads` (threads sum scores in
    another order, which reorders near-ties), so it defaults to 1 on every machine.
    """
    if bool(files) == (sentences is not None):
        raise ValueError("give exactly one of `files` and `sentences`")
    prefix = output[: -len(".model")] if output.endswith(".model") else output
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    spm.set_random_generator_seed(seed)
    kwargs = dict(
        model_prefix=prefix,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        input_sentence_size=input_sentence_size,
        shuffle_input_sentence=True,
        hard_vocab_limit=hard_vocab_limit,
        num_threads=num_threads,
        minloglevel=2,
        **T5_SPECIAL_IDS,
    )
    if files:
        spm.SentencePieceTrainer.train(input=list(files), **kwargs)
    else:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), **kwargs)
    return prefix + ".model"


def load_for_batches(path: str, extra_ids: int) -> Vocabulary:
    """The vocabulary at `path`, checked for what the batches need: pad id 0 and an EOS."""

    vocab = Vocabulary(path, extra_ids)
    if vocab.pad_id != 0 or vocab.eos_id < 0:
        raise ConfigError(
            f"{path}: batches pad with 0, so the vocabulary needs pad id 0 and an EOS id "
            f"(T5's: pad 0, eos 1), got pad {vocab.pad_id}, eos {vocab.eos_id}; train one "
            "with `python -m launch.prepare_data vocab`"
        )
    return vocab
