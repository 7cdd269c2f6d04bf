"""What to run, and which files it needs, for a data set that is not prepared yet."""

from __future__ import annotations

import shlex

from framework.data.image_prepare import fashion_mnist, image_folder, imagenet
from framework.data.image_prepare.fashion_mnist import FASHION_MNIST
from framework.data.image_prepare.imagenet import IMAGENET, IMAGENET_TARS

COMMAND = "python -m launch.prepare_data"


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
        return fashion_mnist.EXPECTED_FILES
    if name == IMAGENET:
        return imagenet.EXPECTED_FILES
    return image_folder.EXPECTED_FILES
