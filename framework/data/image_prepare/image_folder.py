"""A folder of images in class sub-folders (optionally in split folders) as a tfds data set.

`DIR/<class>/*.jpg`, or `DIR/{train,validation,test}/<class>/...`. Every image is decoded
once with PIL before anything is written; JPEG and PNG files are stored byte for byte,
other formats (and CMYK JPEGs, which TensorFlow decodes with wrong colours) are
re-encoded losslessly as PNG. Features: `image`, `label` (the class folders' names,
sorted) and `file_name` (the path under DIR); an example's key is its `file_name`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
import re

import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from framework.data.image_prepare.common import (
    Prepared,
    download_config,
    find_prepared,
    prepared,
    resolve_data_dir,
)
from framework.errors import ConfigError

# Split folders of an image folder (`val` is read as `validation`).
SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
STORED_FORMATS = ("JPEG", "PNG")
_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
EXPECTED_FILES = (
    "a directory of class sub-folders of JPEG/PNG images (DIR/<class>/*.jpg), or of "
    "split folders DIR/{train,validation,test}/<class>/*.jpg"
)


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
    found = find_prepared(data_dir, name, version)
    if found is not None:
        return found
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
    builder.download_and_prepare(download_config=download_config())
    return prepared(builder, created=True)
