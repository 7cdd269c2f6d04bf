"""Fashion-MNIST from its IDX files (the Debian package `dataset-fashion-mnist`).

The package ships the four files tfds downloads; they are read from `--source_dir`, the
installed package, a cache under `DATA_DIR`, or fetched with `apt-get download` (a
package registry, no root needed). A subclass of tfds' own `fashion_mnist` builder
writes them, so `tfds.builder("fashion_mnist")` reads the result like the official one.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
from tensorflow_datasets.image_classification import mnist

from framework.data import debian
from framework.data.image_prepare.common import (
    Prepared,
    already_prepared,
    download_config,
    has_info,
    prepared,
    resolve_data_dir,
)
from framework.errors import ConfigError

FASHION_MNIST = "fashion_mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = 10
FASHION_MNIST_DEB = "dataset-fashion-mnist"
FASHION_MNIST_DEB_PATH = "usr/share/datasets/fashion-mnist"  # inside the package
FASHION_MNIST_SYSTEM_DIR = "/" + FASHION_MNIST_DEB_PATH
FASHION_MNIST_CACHE = os.path.join("downloads", "fashion_mnist_deb")  # under DATA_DIR
EXPECTED_FILES = (
    "the Fashion-MNIST IDX files {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "
    f"(Debian package {FASHION_MNIST_DEB}, fetched with `apt-get download` if absent)"
)


def read_idx(path: str, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (optionally gzipped) as an array of `ndim` dims."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    magic = 0x0800 + ndim  # 2049 labels, 2051 images: unsigned bytes, `ndim` dims
    if len(data) < 4 + 4 * ndim or int.from_bytes(data[:4], "big") != magic:
        raise ConfigError(f"{path}: not an IDX file of {ndim}-d unsigned bytes (magic {magic})")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ConfigError(f"{path}: header says {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def _fashion_file_names() -> list[str]:
    return [f for pair in FASHION_MNIST_FILES.values() for f in pair]


def fashion_mnist_source(data_dir: str | None = None, source_dir: str | None = None) -> str:
    """The directory holding the four Fashion-MNIST IDX files.

    `source_dir` if given; else the installed Debian package's folder; else the copy
    cached under `DATA_DIR/downloads/fashion_mnist_deb/`; else the package is fetched
    without root (`apt-get download` + `dpkg -x`) into that cache.
    """
    names = _fashion_file_names()
    if source_dir:
        missing = debian.missing_files(source_dir, names)
        if missing:
            raise ConfigError(f"--source_dir={source_dir} lacks {', '.join(missing)}")
        return source_dir
    cache = os.path.join(resolve_data_dir(data_dir), FASHION_MNIST_CACHE)
    for directory in (FASHION_MNIST_SYSTEM_DIR, cache):
        if not debian.missing_files(directory, names):
            return directory
    return _fetch_fashion_mnist_deb(cache)


def _fetch_fashion_mnist_deb(cache: str) -> str:
    advice = (
        f"install it (apt-get install {FASHION_MNIST_DEB}) or pass --source_dir=DIR holding "
        + ", ".join(_fashion_file_names())
    )
    return debian.fetch(
        FASHION_MNIST_DEB, FASHION_MNIST_DEB_PATH, _fashion_file_names(), cache, advice
    )


def _read_fashion_mnist(source_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    arrays = {}
    for split, (images_file, labels_file) in FASHION_MNIST_FILES.items():
        images_path = os.path.join(source_dir, images_file)
        labels_path = os.path.join(source_dir, labels_file)
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if images.shape[1:] != mnist.MNIST_IMAGE_SHAPE[:2]:
            raise ConfigError(f"{images_path}: images are {images.shape[1:]}, not 28x28")
        if len(images) != len(labels):
            raise ConfigError(
                f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels"
            )
        if labels.size and labels.max() >= FASHION_MNIST_CLASSES:
            raise ConfigError(f"{labels_path}: label {labels.max()} outside 0..9")
        arrays[split] = (images[..., None], labels)
    return arrays


class _FashionMnistFromArrays(mnist.FashionMNIST, skip_registration=True):
    """tfds' `fashion_mnist` (same name, version, info), fed from arrays read locally."""

    name = FASHION_MNIST

    def __init__(self, *, arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None, **kwargs):
        self._arrays = arrays
        super().__init__(**kwargs)

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(*self._arrays[split]) for split in self._arrays}

    def _generate_examples(self, images, labels):
        # As tfds' MNIST builder: the index is the key, so the shuffled order matches.
        for index, (image, label) in enumerate(zip(images, labels)):
            yield index, {"image": image, "label": int(label)}


def prepare_fashion_mnist(data_dir: str | None = None, source_dir: str | None = None) -> Prepared:
    """Writes Fashion-MNIST (train 60000, test 10000) as tfds' `fashion_mnist` 3.0.1."""
    data_dir = resolve_data_dir(data_dir)
    if has_info(data_dir, FASHION_MNIST, _FashionMnistFromArrays.VERSION):
        builder = _FashionMnistFromArrays(arrays=None, data_dir=data_dir)
        return already_prepared(builder, FASHION_MNIST)
    arrays = _read_fashion_mnist(fashion_mnist_source(data_dir, source_dir))
    builder = _FashionMnistFromArrays(arrays=arrays, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=download_config())
    return prepared(builder, created=True)
