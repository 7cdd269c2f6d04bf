"""Geometric preprocessing ops: crops, resizes and flips of the decoded image.

Images are numpy arrays [H, W, C]; resizes use PIL's bilinear filter (`resize_image`),
keeping the dtype. Random ops draw from the op's `rng` in a fixed order, so an
example's augmentation is a function of its seed.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

from framework.data.pp.checks import check_number, image_of, record_id, size_hw, with_changes
from framework.data.pp.registry import Example, OpFn, register


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes [H, W, C] to [height, width, C] with PIL bilinear, keeping the dtype.

    uint8 images with 1, 3 or 4 channels go through PIL in one piece; other images
    (float, other channel counts) channel by channel in PIL's float mode.
    """
    if image.shape[:2] == (height, width):
        return image
    if image.dtype == np.uint8 and image.shape[2] in (1, 3, 4):
        pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
        out = np.asarray(pil.resize((width, height), Image.BILINEAR))
        return out.reshape(height, width, image.shape[2])
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], np.float32), mode="F").resize(
                (width, height), Image.BILINEAR
            )
        )
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=-1).astype(image.dtype)


def inception_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    area_min: float = 0.05,
    area_max: float = 1.0,
    ratio_min: float = 3 / 4,
    ratio_max: float = 4 / 3,
) -> tuple[int, int, int, int]:
    """A random Inception-style crop box (top, left, h, w) inside a height x width image.

    Up to 10 tries: the area fraction uniform in [area_min, area_max], the aspect ratio
    w/h log-uniform in [ratio_min, ratio_max], h and w rounded; the first box that fits
    is placed uniformly. If none fits, the largest centred box with a ratio in range.
    """
    area = height * width
    log_min, log_max = math.log(ratio_min), math.log(ratio_max)
    for _ in range(10):
        target = area * rng.uniform(area_min, area_max)
        ratio = math.exp(rng.uniform(log_min, log_max))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    ratio = width / height
    if ratio < ratio_min:
        w, h = width, min(height, max(1, int(round(width / ratio_min))))
    elif ratio > ratio_max:
        h, w = height, min(width, max(1, int(round(height * ratio_max))))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


@register("inception_crop")
def inception_crop(
    size: int | Sequence[int],
    area_min: float = 0.05,
    area_max: float = 1.0,
    ratio_min: float = 3 / 4,
    ratio_max: float = 4 / 3,
) -> OpFn:
    """Inception-style random-resized crop to `size` (int or (h, w)); see inception_crop_box."""
    out_h, out_w = size_hw(size)
    area_min, area_max = check_number("area_min", area_min), check_number("area_max", area_max)
    ratio_min = check_number("ratio_min", ratio_min)
    ratio_max = check_number("ratio_max", ratio_max)
    if not 0 < area_min <= 1:
        raise ValueError(f"area_min must lie in (0, 1], got {area_min}")
    if not area_min <= area_max <= 1:
        raise ValueError(f"area_max must lie in [area_min, 1] = [{area_min}, 1], got {area_max}")
    if not 0 < ratio_min <= ratio_max:
        raise ValueError(
            f"need 0 < ratio_min <= ratio_max, got ratio_min={ratio_min}, ratio_max={ratio_max}"
        )

    def op(example: Example, rng: np.random.Generator) -> Example:
        image = image_of(example, "inception_crop")
        top, left, h, w = inception_crop_box(
            image.shape[0], image.shape[1], rng, area_min, area_max, ratio_min, ratio_max
        )
        crop = image[top : top + h, left : left + w]
        return with_changes(example, image=resize_image(crop, out_h, out_w))

    return op


@register("resize")
def resize(size: int | Sequence[int]) -> OpFn:
    """Resizes to `size` (int or (h, w)), aspect ratio not kept."""
    out_h, out_w = size_hw(size)

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        image = image_of(example, "resize")
        return with_changes(example, image=resize_image(image, out_h, out_w))

    return op


@register("resize_small")
def resize_small(size: int) -> OpFn:
    """Resizes so that the shorter side is `size`, keeping the aspect ratio."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    size = int(size)

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        image = image_of(example, "resize_small")
        h, w = image.shape[:2]
        scale = size / min(h, w)
        new_h = size if h <= w else int(round(h * scale))
        new_w = size if w <= h else int(round(w * scale))
        return with_changes(example, image=resize_image(image, new_h, new_w))

    return op


def _crop_fits(image: np.ndarray, h: int, w: int, example: Example, op: str) -> None:
    if image.shape[0] < h or image.shape[1] < w:
        raise ValueError(
            f"{op}: image {record_id(example)} of shape {image.shape[:2]} is smaller than "
            f"the crop ({h}, {w})"
        )


@register("central_crop")
def central_crop(size: int | Sequence[int]) -> OpFn:
    """Crops the centre `size` (int or (h, w)); the top-left corner at ((H-h)//2, (W-w)//2)."""
    h, w = size_hw(size)

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        image = image_of(example, "central_crop")
        _crop_fits(image, h, w, example, "central_crop")
        top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        return with_changes(example, image=image[top : top + h, left : left + w])

    return op


@register("random_crop")
def random_crop(size: int | Sequence[int]) -> OpFn:
    """Crops `size` (int or (h, w)) at a uniformly random place (draws top, then left)."""
    h, w = size_hw(size)

    def op(example: Example, rng: np.random.Generator) -> Example:
        image = image_of(example, "random_crop")
        _crop_fits(image, h, w, example, "random_crop")
        top = int(rng.integers(0, image.shape[0] - h + 1))
        left = int(rng.integers(0, image.shape[1] - w + 1))
        return with_changes(example, image=image[top : top + h, left : left + w])

    return op


@register("flip_lr")
def flip_lr(p: float = 0.5) -> OpFn:
    """Flips left-right with probability `p` (always one `rng.random()` draw)."""
    p = check_number("p", p)
    if not 0 <= p <= 1:
        raise ValueError(f"p must lie in [0, 1], got {p}")

    def op(example: Example, rng: np.random.Generator) -> Example:
        image = image_of(example, "flip_lr")
        if rng.random() < p:
            image = np.ascontiguousarray(image[:, ::-1])
        return with_changes(example, image=image)

    return op
