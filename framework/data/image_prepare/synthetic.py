"""Generated JPEGs of ImageNet's typical size, prepared as an image folder.

A stand-in for ImageNet in input-pipeline benchmarks: files about as large and as slow
to decode as ImageNet's, in class sub-folders, with no download.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from PIL import Image

from framework.data.image_prepare.common import Prepared, find_prepared, resolve_data_dir
from framework.data.image_prepare.image_folder import check_name, prepare_image_folder
from framework.errors import ConfigError

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
    found = find_prepared(resolve_data_dir(data_dir), name, "1.0.0")
    if found is not None:
        return found
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_jpegs(folder, num_images, num_classes)
        return prepare_image_folder(folder, name, data_dir=data_dir)
