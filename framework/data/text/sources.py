"""Text sources: documents -> token ids -> fixed-length chunks.

As in T5's span-corruption pipeline, documents are tokenised without EOS, concatenated
and cut into chunks of the raw length; a trailing piece shorter than a chunk is dropped.
- Local (or `gs://`) text files: read whole into memory and cut into an array of
  chunks, so that any chunk can be addressed by index (train batches from (seed, step)).
- tfds (e.g. `c4/en`): a stream of the `text` feature, read with tf.data, tokenised in
  tf.data's parallel map and chunked as it arrives.
And the examples of a text-to-text task's split (`read_examples`): from tfds, decoded to
Python values, or from the task's local files. Nothing is downloaded during a run: a
data set that is not prepared is a one-line ConfigError saying how to prepare it.
"""

from __future__ import annotations

import glob
import itertools
import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from framework.data.text.vocabulary import Vocabulary
from framework.errors import ConfigError

if TYPE_CHECKING:
    from framework.data.text.tasks import Task

_DOCS_PER_ENCODE = 256
DOCUMENTS = ("lines", "paragraphs")


def _is_remote(path: str) -> bool:
    return "://" in path


def path_exists(path: str) -> bool:
    """Whether a local or remote (`gs://`, read with TensorFlow's gfile) path exists."""
    if _is_remote(path):
        import tensorflow as tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def matching_files(patterns: str) -> list[str]:
    """Sorted files matching comma-separated glob patterns (local, or remote with gfile;
    TensorFlow is imported only for remote ones, so a missing local file is reported
    quickly)."""
    files = set()
    for pattern in filter(None, (p.strip() for p in patterns.split(","))):
        if _is_remote(pattern):
            import tensorflow as tf

            files.update(tf.io.gfile.glob(pattern))
        else:
            files.update(f for f in glob.glob(pattern) if os.path.isfile(f))
    return sorted(files)


def match_files(patterns: str) -> list[str]:
    """Sorted files matching comma-separated glob patterns; an error if none match."""
    files = matching_files(patterns)
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
    raise ConfigError(
        f"config.dataset.documents must be 'lines' or 'paragraphs', got {documents!r}"
    )


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


def _tfds_state(name: str, data_dir: str, error: Exception) -> tuple[str, str, bool]:
    """(tfds data root, the error's first line, whether `name` is prepared there)."""
    import tensorflow_datasets as tfds

    root = os.path.expanduser(data_dir or tfds.core.constants.DATA_DIR)
    said = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    pattern = os.path.join(root, *name.split(":")[0].split("/"), "**", "dataset_info.json")
    return root, said, bool(glob.glob(pattern, recursive=True))


def tfds_not_ready_message(name: str, split: str, data_dir: str, error: Exception) -> str:
    """One line on why tfds cannot read `name` / `split` here, and how to prepare it."""
    root, said, prepared = _tfds_state(name, data_dir, error)
    if "not found" in said.lower() and type(error).__name__ == "DatasetNotFoundError":
        return f"config.dataset.tfds_name={name!r}: tfds knows no such data set ({said})"
    if prepared:
        return f"config.dataset.tfds_name={name!r}, split {split!r} in {root}: {said}"
    return (
        f"config.dataset.tfds_name={name!r} is not prepared in {root} (nothing is downloaded "
        f"during a run); prepare it with tfds on a machine with internet, `tfds build {name} "
        f"--data_dir=DIR` (C4 needs Apache Beam and about 800 GB), and copy DIR here or set "
        f"config.dataset.data_dir=DIR; or train on local text files "
        f"(config.dataset.source=text_files, e.g. `python -m launch.prepare_data shakespeare "
        f"--out_dir=DIR`)"
    )


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
    try:
        ds = tfds.load(
            name,
            split=split,
            data_dir=data_dir or None,
            download=False,
            shuffle_files=train,
            read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed),
        )
    except Exception as error:  # tfds raises several types for "not here"
        raise ConfigError(tfds_not_ready_message(name, split, data_dir, error)) from None
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


# ---------------------------------------------------------------- task examples


def decode_example(value: Any) -> Any:
    """A tfds numpy example as Python values: bytes -> str, arrays -> lists, scalars."""
    if isinstance(value, Mapping):
        return {k: decode_example(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [decode_example(v) for v in value.tolist()] if value.ndim else value.item()
    if isinstance(value, (list, tuple)):
        return [decode_example(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def task_not_ready_message(task: Task, split: str, data_dir: str, error: Exception) -> str:
    """One line on why tfds cannot read `task`'s split here, and how to prepare it."""
    root, said, prepared = _tfds_state(task.tfds_name, data_dir, error)
    if prepared:
        return f"config.dataset.task={task.name!r}: tfds {task.tfds_name!r} split {split!r}: {said}"
    return (
        f"config.dataset.task={task.name!r} needs the tfds data set {task.tfds_name!r}, which is "
        f"not prepared in {root} (nothing is downloaded during a run); prepare it on a machine "
        f'with internet: python -c "import tensorflow_datasets as tfds; tfds.builder('
        f"'{task.tfds_name}', data_dir='DIR').download_and_prepare()\", then copy DIR here and "
        f"set config.dataset.data_dir=DIR"
    )


def read_examples(
    task: Task, split: str, data_dir: str = "", limit: int | None = None
) -> list[dict[str, Any]]:
    """The first `limit` (None: all) raw examples of a task's split, decoded, in order."""
    if task.read_local is not None:
        if task.splits and split not in task.splits:
            raise ConfigError(
                f"split {split!r}: task {task.name!r} has no such split; "
                f"known: {', '.join(task.splits)}"
            )
        return task.read_local(data_dir or task.local_dir, split)[:limit]
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(task.tfds_name, split=split, data_dir=data_dir or None, download=False)
    except Exception as error:  # tfds raises several types for "not here"
        raise ConfigError(task_not_ready_message(task, split, data_dir, error)) from None
    return [decode_example(x) for x in itertools.islice(tfds.as_numpy(ds), limit)]
