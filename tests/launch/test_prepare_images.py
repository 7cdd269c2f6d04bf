"""Image data sets prepared from local files (`launch.prepare_data fashion_mnist |
image_folder | imagenet2012`), read back with tfds.data_source and tfds.builder."""

import gzip
import io
import os
import shutil
import subprocess
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from framework.data.image_prepare import (
    advice,
    common,
    fashion_mnist,
    image_folder,
    imagenet,
)
from framework.errors import ConfigError
from tests.launch import cli

SKIP = {"image": tfds.decode.SkipDecoding()}
FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_source(tmp_path):
    """Tiny Fashion-MNIST IDX files: 5 train and 3 test images."""
    rng = np.random.default_rng(0)
    source = tmp_path / "idx"
    source.mkdir()
    arrays = {}
    for split, prefix, n in (("train", "train", 5), ("test", "t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(source / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", labels)
        arrays[split] = images, labels
    return str(source), arrays


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_fashion_mnist_reads_back_as_tfds_fashion_mnist(fashion_source, tmp_path):
    source, arrays = fashion_source
    data_dir = str(tmp_path / "tfds")
    prepared = fashion_mnist.prepare_fashion_mnist(data_dir, source_dir=source)
    assert prepared.created and prepared.num_examples == {"train": 5, "test": 3}
    assert prepared.path == os.path.join(data_dir, "fashion_mnist", "3.0.1")

    builder = tfds.builder("fashion_mnist", data_dir=data_dir)  # tfds' registered class
    assert builder.info.features["label"].names[:5] == FASHION_NAMES
    assert builder.info.features["image"].shape == (28, 28, 1)
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 5, "test": 3}
    for split, (images, labels) in arrays.items():
        source = tfds.data_source(
            "fashion_mnist", split=split, data_dir=data_dir, download=False, decoders=SKIP
        )
        got = {decode(e["image"]).tobytes(): int(e["label"]) for e in source}
        assert got == {image.tobytes(): int(label) for image, label in zip(images, labels)}

    files = sorted(os.listdir(prepared.path))
    stamps = [os.path.getmtime(os.path.join(prepared.path, f)) for f in files]
    again = fashion_mnist.prepare_fashion_mnist(data_dir, source_dir="/nonexistent")
    assert not again.created and "nothing to do" in again.summary()
    assert [os.path.getmtime(os.path.join(prepared.path, f)) for f in files] == stamps


def fake_apt_get(tmp_path, deb=None) -> str:
    """A directory with an `apt-get` that hands out `deb` (or fails like apt-get)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    script = f"cp {deb} ." if deb else 'echo "E: Unable to locate package $2" >&2; exit 100'
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\n[ "$1" = download ] || exit 1\n{script}\n')
    (bin_dir / "apt-get").chmod(0o755)
    return str(bin_dir)


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="needs dpkg-deb")
def test_fashion_mnist_fetches_the_debian_package_once(fashion_source, tmp_path, monkeypatch):
    source, _ = fashion_source
    package = tmp_path / "pkg"
    shutil.copytree(source, package / "usr/share/datasets/fashion-mnist")
    (package / "DEBIAN").mkdir()
    (package / "DEBIAN/control").write_text(
        "Package: dataset-fashion-mnist\nVersion: 1\nArchitecture: all\n"
        "Maintainer: test <t@example.com>\nDescription: test\n"
    )
    deb = tmp_path / "dataset-fashion-mnist_1_all.deb"
    subprocess.run(["dpkg-deb", "--build", str(package), str(deb)], check=True, capture_output=True)
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "absent"))
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", fake_apt_get(tmp_path, deb) + os.pathsep + path)
    data_dir = str(tmp_path / "tfds")
    cache = os.path.join(data_dir, "downloads", "fashion_mnist_deb")
    assert fashion_mnist.fashion_mnist_source(data_dir) == cache
    assert sorted(os.listdir(cache)) == sorted(os.listdir(source))
    monkeypatch.setenv("PATH", fake_apt_get(tmp_path / "failing") + os.pathsep + path)
    assert fashion_mnist.fashion_mnist_source(data_dir) == cache  # no apt-get call
    with pytest.raises(ConfigError, match="apt-get download dataset-fashion-mnist.*--source_dir"):
        fashion_mnist.fashion_mnist_source(str(tmp_path / "other"))


def save(path, array, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path.read_bytes()


def make_images(root, gray=False):
    """Two classes x (PNG, JPEG) under root; returns {relative path: bytes}."""
    rng = np.random.default_rng(1)
    shape = (6, 5) if gray else (6, 5, 3)
    stored = {}
    for c in ("cat", "dog"):
        for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG")):
            array = rng.integers(0, 256, shape, dtype=np.uint8)
            stored[f"{c}/{name}"] = save(root / c / name, array, fmt)
    return stored


def read(name, split, data_dir):
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False, decoders=SKIP)
    return {e["file_name"].decode(): e for e in source}


def test_image_folder_stores_files_as_they_are(tmp_path):
    stored = make_images(tmp_path / "in")
    bmp = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    save(tmp_path / "in/dog/c.bmp", bmp, "BMP")  # not JPEG/PNG: stored as PNG
    (tmp_path / "in/dog/.DS_Store").write_bytes(b"junk")  # hidden files are skipped
    data_dir = str(tmp_path / "tfds")
    prepared = image_folder.prepare_image_folder(str(tmp_path / "in"), "pets", data_dir)
    assert prepared.num_examples == {"train": 5}

    info = tfds.builder("pets", data_dir=data_dir).info  # found from the files alone
    assert info.features["label"].names == ["cat", "dog"]
    assert info.features["image"].shape == (None, None, 3)
    assert info.splits["train"].num_examples == 5
    examples = read("pets", "train", data_dir)
    assert sorted(examples) == sorted([*stored, "dog/c.bmp"])
    for name, data in stored.items():
        assert examples[name]["image"] == data
        assert examples[name]["label"] == ["cat", "dog"].index(name.split("/")[0])
    png = examples["dog/c.bmp"]["image"]
    assert png.startswith(b"\x89PNG") and np.array_equal(decode(png), bmp)

    again = image_folder.prepare_image_folder(str(tmp_path / "in"), "pets", data_dir)
    assert not again.created and again.num_examples == {"train": 5}


def test_image_folder_split_folders_and_gray_images(tmp_path):
    train = make_images(tmp_path / "in/train", gray=True)
    save(tmp_path / "in/val/dog/x.png", np.zeros((3, 4), np.uint8), "PNG")
    save(tmp_path / "in/val/emu/y.png", np.ones((3, 4), np.uint8), "PNG")
    data_dir = str(tmp_path / "tfds")
    prepared = image_folder.prepare_image_folder(
        str(tmp_path / "in"), "birds_and_pets", data_dir, version="2.1.0"
    )
    assert prepared.path == os.path.join(data_dir, "birds_and_pets", "2.1.0")
    assert prepared.num_examples == {"train": 4, "validation": 2}
    info = tfds.builder("birds_and_pets", data_dir=data_dir).info
    assert info.features["label"].names == ["cat", "dog", "emu"]
    assert info.features["image"].shape == (None, None, 1)
    examples = read("birds_and_pets", "train", data_dir)
    assert {k: e["image"] for k, e in examples.items()} == {
        f"train/{k}": v for k, v in train.items()
    }
    validation = read("birds_and_pets", "validation", data_dir)
    assert {k: int(e["label"]) for k, e in validation.items()} == {
        "val/dog/x.png": 1,
        "val/emu/y.png": 2,
    }
    decoded = tfds.data_source("birds_and_pets", split="validation", data_dir=data_dir)
    assert decoded[0]["image"].shape == (3, 4, 1)


def test_image_folder_rejects_bad_input(tmp_path):
    make_images(tmp_path / "in")
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(ConfigError, match="is a tfds data set"):
        image_folder.prepare_image_folder(str(tmp_path / "in"), "mnist", data_dir)
    with pytest.raises(ConfigError, match="lower-case"):
        image_folder.prepare_image_folder(str(tmp_path / "in"), "My-Pets", data_dir)
    with pytest.raises(ConfigError, match="no such directory"):
        image_folder.prepare_image_folder(str(tmp_path / "none"), "pets", data_dir)


def test_corrupt_image_is_one_line_error(tmp_path):
    make_images(tmp_path / "in")
    bad = tmp_path / "in/cat/broken.jpg"
    bad.write_bytes(save(tmp_path / "ok.jpg", np.zeros((64, 64, 3), np.uint8), "JPEG")[:200])
    data_dir = tmp_path / "tfds"
    result = cli.run(
        "launch.prepare_data",
        "image_folder",
        f"--input={tmp_path / 'in'}",
        "--name=pets",
        f"--data_dir={data_dir}",
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(bad) in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (data_dir / "pets").exists()


def add(tar, name, data):
    entry = tarfile.TarInfo(name)
    entry.size = len(data)
    tar.addfile(entry, io.BytesIO(data))


def jpeg(seed):
    array = np.random.default_rng(seed).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG")
    return out.getvalue()


def test_imagenet2012_from_fake_tars(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    classes = ("n01440764", "n01443537")
    with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as train:
        for c in classes:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as per_class:
                for i in range(2):
                    add(per_class, f"{c}_{i}.JPEG", jpeg(i))
            add(train, f"{c}.tar", inner.getvalue())
    with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as val:
        for i in (1, 2, 3):
            add(val, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg(10 + i))
    data_dir = str(tmp_path / "tfds")

    result = cli.run(
        "launch.prepare_data", "imagenet2012", f"--manual_dir={manual}", f"--data_dir={data_dir}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imagenet2012:5.1.0 prepared" in result.stdout

    info = tfds.builder("imagenet2012", data_dir=data_dir).info
    names = info.features["label"].names
    assert len(names) == 1000
    assert {s: i.num_examples for s, i in info.splits.items()} == {"train": 4, "validation": 3}
    train = read("imagenet2012", "train", data_dir)
    assert {k: names[e["label"]] for k, e in train.items()} == {
        f"{c}_{i}.JPEG": c for c in classes for i in range(2)
    }
    assert all(decode(e["image"]).shape == (8, 10, 3) for e in train.values())
    shipped = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    first = shipped.read_text().split()[:3]
    validation = read("imagenet2012", "validation", data_dir)
    assert [names[validation[k]["label"]] for k in sorted(validation)] == first

    again = imagenet.prepare_imagenet2012(str(tmp_path / "gone"), data_dir)
    assert not again.created


def test_imagenet2012_without_tars_names_them(tmp_path):
    (tmp_path / "ILSVRC2012_img_val.tar").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"lacks ILSVRC2012_img_train\.tar \(.*image-net\.org"):
        imagenet.prepare_imagenet2012(str(tmp_path), str(tmp_path / "tfds"))


def test_prepare_command_and_expected_files(monkeypatch):
    command = advice.prepare_command
    assert command("fashion_mnist:3.0.1", "/d") == (
        "python -m launch.prepare_data fashion_mnist --data_dir=/d"
    )
    assert command("imagenet2012", None).startswith(
        "python -m launch.prepare_data imagenet2012 --manual_dir=<dir with "
        "ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar>"
    )
    assert command("pets:2.0.0", "/my data") == (
        "python -m launch.prepare_data image_folder --input=<dir with one sub-folder of "
        "images per class> --name=pets --version=2.0.0 --data_dir='/my data'"
    )
    assert "ILSVRC2012_img_train.tar" in advice.expected_files("imagenet2012")
    assert "dataset-fashion-mnist" in advice.expected_files("fashion_mnist")
    assert "class sub-folders" in advice.expected_files("pets")
    monkeypatch.setenv("TFDS_DATA_DIR", "/elsewhere")
    assert common.resolve_data_dir(None) == "/elsewhere"
