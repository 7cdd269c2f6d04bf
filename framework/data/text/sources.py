"""Text sources: documents -> token ids -> fixed-length chunks.

As in T5's span-corruption pipeline, documents are tokenised without EOS, concatenated
and cut into chunks of the raw length; a trailing piece shorter than a chunk is dropped.
- Local (or `gs://`) text files: read whole into memory and cut into an array of
  chunks, so that any chunk can be addressed by index (train batches from (seed, step)).
- tfds (e.g. `c4/en`): a stream of the `text` feature, read with tf.data, tokenised in
  tf.data's parallel map and chunked as it arrives.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import numpy as np

from framework.data.text.vocabulary import Vocabulary
from framework.errors import ConfigError

_DOCS_PER_ENCODE = 256


def match_files(patterns: str) -> list[str]:
    """Sorted files matching comma-separated glob patterns; an error if none match."""
    import tensorflow as tf

    files = sorted({f for p in patterns.split(",") if p.strip() for f in tf.io.gfile.glob(p)})
    if not files:
        raise ConfigError(f"no text files match {patterns!r}")
    return files


def split_documents(text: str, documents: str) -> list[str]:
    """Documents of a file: non-blank `lines`, or blank-line separated `paragraphs`."""
    if documents == "lines":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if documents == "paragraphs":
        paragraphs, current = [], []
        for line in text.splitlines() + [""]:
            if line.strip():
                current.append(line.strip())
            elif current:
                paragraphs.append(" ".join(current))
                current = []
        return paragraphs
    raise ConfigError(f"dataset.documents must be 'lines' or 'paragraphs', got {documents!r}")


def read_documents(patterns: str, documents: str = "lines") -> list[str]:
    """All documents of the files matching `patterns`, in file order."""
    import tensorflow as tf

    docs = []
    for path in match_files(patterns):
        with tf.io.gfile.GFile(path, "r") as f:
            docs.extend(split_documents(f.read(), documents))
    return docs


def chunk_tokens(token_lists: Iterable[Sequence[int]], length: int) -> np.ndarray:
    """[N, length] int32: the concatenated tokens cut into whole chunks."""
    flat = np.concatenate([np.asarray(t, np.int32) for t in token_lists] + [np.zeros(0, np.int32)])
    n = len(flat) // length
    return flat[: n * length].reshape(n, length)


def text_file_chunks(
    patterns: str, vocab: Vocabulary, length: int, documents: str = "lines"
) -> np.ndarray:
    """[N, length] int32 chunks of the tokenised, concatenated text files."""
    return chunk_tokens(vocab.encode_batch(read_documents(patterns, documents)), length)


def stream_chunks(token_arrays: Iterable[np.ndarray], length: int) -> Iterator[np.ndarray]:
    """Chunks of `length` tokens cut from a stream of token arrays, in order."""
    buffer = np.zeros(0, np.int32)
    for tokens in token_arrays:
        buffer = np.concatenate([buffer, np.asarray(tokens, np.int32)])
        n = len(buffer) // length
        for i in range(n):
            yield buffer[i * length : (i + 1) * length]
        buffer = buffer[n * length :]


def tfds_token_stream(
    vocab: Vocabulary,
    name: str,
    split: str,
    *,
    data_dir: str = "",
    shuffle_seed: int | None = None,
    shuffle_buffer_size: int = 10_000,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[np.ndarray]:
    """Token ids of a tfds text data set, in groups of documents concatenated.

    With `shuffle_seed` (training): this process's share of `split`
    (`tfds.split_for_jax_process`), files and documents shuffled with the seed,
    repeated forever. Without (eval): the whole split, once, in stored order.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    train = shuffle_seed is not None
    if train and process_count > 1:
        split = tfds.split_for_jax_process(
            split, process_index=process_index, process_count=process_count
        )
    ds = tfds.load(
        name,
        split=split,
        data_dir=data_dir or None,
        download=False,
        shuffle_files=train,
        read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed),
    )
    ds = ds.map(lambda example: example["text"])
    if train:
        ds = ds.repeat().shuffle(shuffle_buffer_size, seed=shuffle_seed)

    def encode(texts: np.ndarray) -> np.ndarray:
        ids = vocab.encode_batch([t.decode("utf-8") for t in texts], num_threads=1)
        return np.concatenate([np.asarray(i, np.int32) for i in ids] + [np.zeros(0, np.int32)])

    ds = ds.batch(_DOCS_PER_ENCODE).map(
        lambda texts: tf.numpy_function(encode, [texts], tf.int32, stateful=False),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
