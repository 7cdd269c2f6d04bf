"""ImageNet 2012 through tfds' own `imagenet2012` builder on the ILSVRC2012 tars.

The tars come from image-net.org (registration required) into one `manual_dir`; the
validation labels ship inside tfds.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from framework.data.debian import missing_files
from framework.data.image_prepare.common import (
    Prepared,
    already_prepared,
    download_config,
    has_info,
    prepared,
    resolve_data_dir,
)
from framework.errors import ConfigError

IMAGENET = "imagenet2012"
IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
IMAGENET_OPTIONAL_TAR = "ILSVRC2012_img_test.tar"
IMAGENET_URL = "https://image-net.org/download-images"
EXPECTED_FILES = (
    f"{' and '.join(IMAGENET_TARS)} ({IMAGENET_OPTIONAL_TAR} optional) in one "
    f"directory, from {IMAGENET_URL} (registration required)"
)


def prepare_imagenet2012(manual_dir: str, data_dir: str | None = None) -> Prepared:
    """Runs tfds' `imagenet2012` builder on the ILSVRC2012 tars in `manual_dir`."""
    data_dir = resolve_data_dir(data_dir)
    if has_info(data_dir, IMAGENET, tfds.builder_cls(IMAGENET).VERSION):
        return already_prepared(tfds.builder(IMAGENET, data_dir=data_dir), IMAGENET)
    missing = missing_files(manual_dir, IMAGENET_TARS) if manual_dir else list(IMAGENET_TARS)
    if missing:
        raise ConfigError(
            f"--manual_dir={manual_dir or '?'} lacks {', '.join(missing)} (expected "
            f"{EXPECTED_FILES})"
        )
    builder = tfds.builder(IMAGENET, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(download_config=download_config(manual_dir=manual_dir))
    return prepared(builder, created=True)
