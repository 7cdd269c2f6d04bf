"""Image data sets prepared from local files as tfds data sets in ArrayRecord format.

Every data set lands at `DATA_DIR/<name>/<version>/` as an ordinary tfds data set
(`file_format="array_record"`) with the features `image` (`tfds.features.Image`, encoded
PNG/JPEG bytes), `label` (`tfds.features.ClassLabel`) and, where the source has names,
`file_name` (`tfds.features.Text`). It reads back with
`tfds.data_source(name, split=..., data_dir=DATA_DIR, download=False)` and
`tfds.builder(name, data_dir=DATA_DIR).info`. `DATA_DIR` defaults to tfds' own default
(`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). Nothing here downloads from the web;
only `fashion_mnist` may call `apt-get download` (a package registry).

- `prepare_fashion_mnist`: Fashion-MNIST from its IDX files (the Debian package
  `dataset-fashion-mnist` ships the ones tfds downloads), written by a subclass of tfds'
  own `fashion_mnist` builder, so `tfds.builder("fashion_mnist")` reads it like the
  official one (version 3.0.1, same features, description and supervised keys).
- `prepare_image_folder`: a directory of class sub-folders (`DIR/<class>/*.jpg`), or of
  split folders holding class sub-folders (`DIR/{train,validation,test}/<class>/...`).
  Every image is decoded once with PIL before anything is written; JPEG and PNG files
  are stored byte for byte, other formats (and CMYK JPEGs, which TensorFlow decodes with
  wrong colours) are re-encoded losslessly as PNG.
- `prepare_imagenet2012`: tfds' own `imagenet2012` builder on a `manual_dir` holding
  `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar` (validation labels ship
  inside tfds).

A data set that is already prepared is left as it is. `prepare_command` and
`expected_files` tell a reader that finds no data what to run.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import gzip
import io
import os
import re
import shlex
import shutil
import subprocess
import tempfile

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image
from tensorflow_datasets.image_classification import mnist

from framework.errors import ConfigError

COMMAND = "python -m launch.prepare_data"

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

IMAGENET = "imagenet2012"
IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
IMAGENET_OPTIONAL_TAR = "ILSVRC2012_img_test.tar"
IMAGENET_URL = "https://image-net.org/download-images"

# Split folders of an image folder (`val` is read as `validation`).
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
STORED_FORMATS = ("JPEG", "PNG")
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Where a prepared data set lives and what it holds."""

    name: str
    version: str
    path: str  # DATA_DIR/<name>/<version>
    num_examples: dict[str, int]  # split -> examples
    created: bool  # False when it was already there

    def summary(self) -> str:
        splits = ", ".join(f"{split} {n}" for split, n in self.num_examples.items())
        if self.created:
            return f"{self.name}:{self.version} prepared at {self.path} ({splits})"
        return (
            f"{self.name}:{self.version} already prepared at {self.path} ({splits}); nothing to do"
        )


def resolve_data_dir(data_dir: str | None) -> str:
    """`data_dir`, or tfds' default (`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`)."""
    return os.path.expanduser(data_dir or tfds.core.constants.get_default_data_dir())


def _base_name(tfds_name: str) -> tuple[str, str | None]:
    """`name[/config][:version]` -> (name, version or None)."""
    name, _, version = tfds_name.partition(":")
    return name.split("/")[0], version or None


def prepare_command(tfds_name: str, data_dir: str | None) -> str:
    """The command line that prepares `tfds_name` (`name[:version]`) in `data_dir`."""
    name, version = _base_name(tfds_name)
    if name == FASHION_MNIST:
        args = [FASHION_MNIST]
    elif name == IMAGENET:
        args = [IMAGENET, f"--manual_dir=<dir with {', '.join(IMAGENET_TARS)}>"]
    else:
        args = ["image_folder", "--input=<dir with one sub-folder of images per class>"]
        args.append(f"--name={name}")
        if version and version != "1.0.0":
            args.append(f"--version={version}")
    if data_dir:
        args.append("--data_dir=" + shlex.quote(data_dir))
    return f"{COMMAND} {' '.join(args)}"


def expected_files(tfds_name: str) -> str:
    """A short description of the local files that `prepare_command` needs."""
    name, _ = _base_name(tfds_name)
    if name == FASHION_MNIST:
        return (
            f"the Fashion-MNIST IDX files {{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz "
            f"(Debian package {FASHION_MNIST_DEB}, fetched with `apt-get download` if absent)"
        )
    if name == IMAGENET:
        return (
            f"{' and '.join(IMAGENET_TARS)} ({IMAGENET_OPTIONAL_TAR} optional) in one "
            f"directory, from {IMAGENET_URL} (registration required)"
        )
    return (
        "a directory of class sub-folders of JPEG/PNG images (DIR/<class>/*.jpg), or of "
        "split folders DIR/{train,validation,test}/<class>/*.jpg"
    )


def _has_info(data_dir: str, name: str, version) -> bool:
    return os.path.isfile(os.path.join(data_dir, name, str(version), "dataset_info.json"))


def _already_prepared(builder, name: str) -> Prepared:
    file_format = builder.info.file_format
    if file_format != tfds.core.FileFormat.ARRAY_RECORD:
        raise ConfigError(
            f"{builder.data_dir} holds {name} in {getattr(file_format, 'value', file_format)} "
            "format, but tfds.data_source reads array_record only: delete that folder and "
            "prepare it again"
        )
    return _prepared(builder, created=False)


def _prepared(builder, created: bool) -> Prepared:
    return Prepared(
        name=builder.name,
        version=str(builder.version),
        path=os.fspath(builder.data_dir),
        num_examples={s: int(i.num_examples) for s, i in builder.info.splits.items()},
        created=created,
    )


# ---------------------------------------------------------------------------
# Fashion-MNIST


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


def _missing(directory: str, names) -> list[str]:
    return [n for n in names if not os.path.isfile(os.path.join(directory, n))]


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
        missing = _missing(source_dir, names)
        if missing:
            raise ConfigError(f"--source_dir={source_dir} lacks {', '.join(missing)}")
        return source_dir
    cache = os.path.join(resolve_data_dir(data_dir), FASHION_MNIST_CACHE)
    for directory in (FASHION_MNIST_SYSTEM_DIR, cache):
        if not _missing(directory, names):
            return directory
    return _fetch_fashion_mnist_deb(cache)


def _fetch_fashion_mnist_deb(cache: str) -> str:
    apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg")
    advice = (
        f"install it (apt-get install {FASHION_MNIST_DEB}) or pass --source_dir=DIR holding "
        + ", ".join(_fashion_file_names())
    )
    if not (apt and dpkg):
        raise ConfigError(
            f"cannot fetch Debian package {FASHION_MNIST_DEB} without apt-get/dpkg; {advice}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        logging.info("fetching %s with apt-get download", FASHION_MNIST_DEB)
        done = subprocess.run(
            [apt, "download", FASHION_MNIST_DEB], cwd=tmp, capture_output=True, text=True
        )
        debs = glob.glob(os.path.join(tmp, "*.deb"))
        if done.returncode or len(debs) != 1:
            said = (done.stderr.strip().splitlines() or ["no .deb file"])[-1]
            raise ConfigError(f"`apt-get download {FASHION_MNIST_DEB}` failed ({said}); {advice}")
        root = os.path.join(tmp, "root")
        done = subprocess.run([dpkg, "-x", debs[0], root], capture_output=True, text=True)
        source = os.path.join(root, FASHION_MNIST_DEB_PATH)
        missing = _missing(source, _fashion_file_names())
        if done.returncode or missing:
            raise ConfigError(
                f"{os.path.basename(debs[0])}: `dpkg -x` gave no {', '.join(missing)}; {advice}"
            )
        staging = f"{cache}.incomplete.{os.getpid()}"
        os.makedirs(staging)
        for name in _fashion_file_names():
            shutil.copyfile(os.path.join(source, name), os.path.join(staging, name))
        if os.path.isdir(cache):  # a partial cache from an older run
            shutil.rmtree(cache)
        os.replace(staging, cache)
    return cache


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
    if _has_info(data_dir, FASHION_MNIST, _FashionMnistFromArrays.VERSION):
        builder = _FashionMnistFromArrays(arrays=None, data_dir=data_dir)
        return _already_prepared(builder, FASHION_MNIST)
    arrays = _read_fashion_mnist(fashion_mnist_source(data_dir, source_dir))
    builder = _FashionMnistFromArrays(arrays=arrays, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=_download_config())
    return _prepared(builder, created=True)


def _download_config(**kwargs) -> tfds.download.DownloadConfig:
    return tfds.download.DownloadConfig(try_download_gcs=False, **kwargs)


# ---------------------------------------------------------------------------
# Image folders


@dataclasses.dataclass(frozen=True)
class _ImageFile:
    path: str
    relative: str  # to the input directory, stored as `file_name`
    label: int
    reencode: bool  # not JPEG/PNG (or a CMYK JPEG): stored as PNG
    gray: bool


def _visible(directory: str) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


def _subdirs(directory: str) -> list[str]:
    return [n for n in _visible(directory) if os.path.isdir(os.path.join(directory, n))]


def _split_folders(input_dir: str) -> dict[str, str]:
    """split -> folder: split folders when every sub-folder is one, else {"train": DIR}."""
    subdirs = _subdirs(input_dir)
    if not subdirs:
        raise ConfigError(f"--input={input_dir} has no class sub-folders (DIR/<class>/*.jpg)")
    if not all(d in SPLIT_FOLDERS for d in subdirs):
        return {"train": input_dir}
    splits = {}
    for folder in subdirs:
        split = SPLIT_FOLDERS[folder]
        if split in splits:
            raise ConfigError(f"--input={input_dir} has both val/ and validation/ split folders")
        if not _subdirs(os.path.join(input_dir, folder)):
            raise ConfigError(
                f"{os.path.join(input_dir, folder)} has no class sub-folders "
                "(expected DIR/<split>/<class>/*.jpg)"
            )
        splits[split] = os.path.join(input_dir, folder)
    return {s: splits[s] for s in ("train", "validation", "test") if s in splits}


def _walk_files(directory: str) -> list[str]:
    files = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
    return files


def _inspect(path: str) -> tuple[str, str]:
    """(PIL format, mode) of an image that decodes completely; ConfigError otherwise."""

    try:
        with Image.open(path) as image:
            image.load()
            return image.format, image.mode
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ...
        reason = " ".join(f"{type(e).__name__}: {e}".split())
        raise ConfigError(f"{path}: not a readable image ({reason})") from None


def _inspect_all(paths: list[str]) -> list[tuple[str, str] | ConfigError]:
    def safe(path):
        try:
            return _inspect(path)
        except ConfigError as e:
            return e

    workers = min(32, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # PIL decodes without the GIL
        return list(pool.map(safe, paths, chunksize=64))


def scan_image_folder(input_dir: str) -> tuple[list[str], dict[str, list[_ImageFile]]]:
    """(label names, split -> images) of an image folder, every image decoded once."""
    if not os.path.isdir(input_dir):
        raise ConfigError(f"--input={input_dir}: no such directory")
    folders = _split_folders(input_dir)
    classes = sorted({c for folder in folders.values() for c in _subdirs(folder)})
    label = {c: i for i, c in enumerate(classes)}
    found = {}
    for split, folder in folders.items():
        found[split] = [
            (path, label[c])
            for c in _subdirs(folder)
            for path in _walk_files(os.path.join(folder, c))
        ]
        if not found[split]:
            raise ConfigError(f"{folder}: no image files in its class sub-folders")
    paths = [path for items in found.values() for path, _ in items]
    results = dict(zip(paths, _inspect_all(paths)))
    errors = [r for r in results.values() if isinstance(r, ConfigError)]
    if errors:
        n = len(errors) - 1
        more = f" (and {n} more unreadable file{'s' if n > 1 else ''})" if n else ""
        raise ConfigError(f"{errors[0]}{more}")
    splits = {}
    for split, items in found.items():
        splits[split] = []
        for path, index in items:
            image_format, mode = results[path]
            reencode = image_format not in STORED_FORMATS or mode == "CMYK"
            if reencode:
                logging.info("%s: %s %s, stored as PNG", path, image_format, mode)
            relative = os.path.relpath(path, input_dir).replace(os.sep, "/")
            splits[split].append(_ImageFile(path, relative, index, reencode, mode in _GRAY_MODES))
    return classes, splits


def _png_bytes(path: str) -> bytes:

    with Image.open(path) as image:
        image.load()  # the first frame of an animation
        if image.mode not in _PNG_MODES:
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()


class _ImageFolderBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A data set of encoded images with class labels, named at construction."""

    def __init__(self, *, name: str, version: str, classes, splits, channels, input_dir, **kw):
        self.name = name
        self.VERSION = tfds.core.Version(version)
        self._classes, self._splits, self._channels = classes, splits, channels
        self._input_dir = input_dir
        super().__init__(**kw)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                f"Images from the class folders of {self._input_dir} (prepared by "
                "`launch.prepare_data image_folder`)."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, self._channels)),
                    "label": tfds.features.ClassLabel(names=self._classes),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {split: self._generate_examples(files) for split, files in self._splits.items()}

    def _generate_examples(self, files):
        for f in files:
            if f.reencode:
                image = _png_bytes(f.path)
            else:
                with open(f.path, "rb") as handle:
                    image = handle.read()
            yield f.relative, {"image": image, "label": f.label, "file_name": f.relative}


def check_name(name: str) -> None:
    """A data set name that tfds reads back from files: snake_case, not a tfds builder."""
    if not _NAME.match(name):
        raise ConfigError(f"--name={name}: use lower-case letters, digits and _ (e.g. my_images)")
    if name in tfds.list_builders(with_community_datasets=False):
        raise ConfigError(
            f"--name={name} is a tfds data set, whose own builder would read it; "
            "choose another name"
        )


def prepare_image_folder(
    input_dir: str, name: str, data_dir: str | None = None, version: str = "1.0.0"
) -> Prepared:
    """Writes the images of `input_dir` as the tfds data set `name:version`."""
    check_name(name)
    try:
        tfds.core.Version(version)
    except ValueError:
        raise ConfigError(f"--version={version}: expected MAJOR.MINOR.PATCH, e.g. 1.0.0") from None
    data_dir = resolve_data_dir(data_dir)
    if _has_info(data_dir, name, version):
        path = os.path.join(data_dir, name, version)
        return _already_prepared(tfds.builder_from_directory(path), name)
    classes, splits = scan_image_folder(input_dir)
    gray = all(f.gray for files in splits.values() for f in files)
    builder = _ImageFolderBuilder(
        name=name,
        version=version,
        classes=classes,
        splits=splits,
        channels=1 if gray else 3,
        input_dir=os.path.abspath(input_dir),
        data_dir=data_dir,
        file_format="array_record",
    )
    builder.download_and_prepare(download_config=_download_config())
    return _prepared(builder, created=True)


# ---------------------------------------------------------------------------
# ImageNet 2012


def prepare_imagenet2012(manual_dir: str, data_dir: str | None = None) -> Prepared:
    """Runs tfds' `imagenet2012` builder on the ILSVRC2012 tars in `manual_dir`."""
    data_dir = resolve_data_dir(data_dir)
    if _has_info(data_dir, IMAGENET, tfds.builder_cls(IMAGENET).VERSION):
        return _already_prepared(tfds.builder(IMAGENET, data_dir=data_dir), IMAGENET)
    missing = _missing(manual_dir, IMAGENET_TARS) if manual_dir else list(IMAGENET_TARS)
    if missing:
        raise ConfigError(
            f"--manual_dir={manual_dir or '?'} lacks {', '.join(missing)} (expected "
            f"{expected_files(IMAGENET)})"
        )
    builder = tfds.builder(IMAGENET, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=_download_config(manual_dir=manual_dir))
    return _prepared(builder, created=True)


# ---------------------------------------------------------------------------
# Generated JPEGs (an input-pipeline benchmark stand-in for ImageNet)

SYNTHETIC_SIZE = (500, 375)  # ImageNet's most common training image size (width, height)


def write_synthetic_jpegs(
    output_dir: str, num_images: int, num_classes: int, seed: int = 0, quality: int = 90
) -> str:
    """Writes `num_images` JPEGs of ImageNet's typical size into class sub-folders.

    Content is smooth random colour fields with fine noise, so the files are about as
    large and as slow to decode as ImageNet's (tens of kB; not flat, not pure noise).
    """
    if num_images < 1 or num_classes < 1:
        raise ConfigError("synthetic_images needs --num_images >= 1 and --num_classes >= 1")
    rng = np.random.default_rng(seed)
    width, height = SYNTHETIC_SIZE
    for index in range(num_images):
        label = index % num_classes
        folder = os.path.join(output_dir, f"class_{label:04d}")
        os.makedirs(folder, exist_ok=True)
        coarse = rng.uniform(0, 255, (height // 25, width // 25, 3)).astype(np.uint8)
        field = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(field, np.float32) + rng.normal(0, 12, (height, width, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(os.path.join(folder, f"{index:06d}.jpg"), quality=quality)
    return output_dir


def prepare_synthetic_images(
    name: str, num_images: int, num_classes: int, data_dir: str | None = None
) -> Prepared:
    """Generates JPEGs (`write_synthetic_jpegs`) and prepares them as `name` (one split)."""
    check_name(name)
    if _has_info(resolve_data_dir(data_dir), name, "1.0.0"):
        path = os.path.join(resolve_data_dir(data_dir), name, "1.0.0")
        return _already_prepared(tfds.builder_from_directory(path), name)
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_jpegs(folder, num_images, num_classes)
        return prepare_image_folder(folder, name, data_dir=data_dir)
