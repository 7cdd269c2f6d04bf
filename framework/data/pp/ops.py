"""Per-example image preprocessing ops: decode, crops, resizes, flips, labels.

Each op is registered as a factory: `factory(*args, **kwargs)` checks its arguments and
returns `op(example, rng) -> example`. Images are numpy arrays [H, W, C] (uint8 after
`decode`, float32 after `value_range`); resizes use PIL's bilinear filter. Pure numpy and
PIL, so the ops run in data worker processes without TensorFlow or JAX.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import numpy as np
from PIL import Image

from framework.data.pp.registry import Example, OpFn, register
from framework.errors import DataError


def record_id(example: Example) -> str:
    """The example's `id` (file or record name) for error messages."""
    return str(example.get("id", "<unknown record>"))


def _size_hw(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    """`size` as (height, width): an int for a square, or a pair; positive ints only."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
        or min(size) <= 0
    ):
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _image(example: Example, op: str) -> np.ndarray:
    """The example's decoded image [H, W, C], or a ValueError naming the record."""
    image = example.get("image")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.dtype == object:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(
            f"{op}: expected a decoded image [H, W, C] in {record_id(example)}, got {shape} "
            "(put `decode` first)"
        )
    return image


def _with(example: Example, **changes: Any) -> Example:
    return {**example, **changes}


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


@register("decode")
def decode(channels: int = 3) -> OpFn:
    """Encoded image bytes -> uint8 [H, W, channels] (RGB, or grey for channels=1).

    An already decoded uint8 array passes through, grey expanded to RGB (or RGB made
    grey) to match `channels`. Undecodable or truncated data raises `DataError`.
    """
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    mode = "RGB" if channels == 3 else "L"

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        data = example.get("image")
        if isinstance(data, np.ndarray) and data.ndim == 0:
            data = data.item()
        if isinstance(data, (bytes, bytearray, np.bytes_)):
            try:
                with Image.open(io.BytesIO(bytes(data))) as pil:
                    pil.load()
                    image = np.asarray(pil.convert(mode))
            except Exception as e:  # PIL raises many types for bad data
                raise DataError(
                    f"cannot decode image {record_id(example)}: {type(e).__name__}: {e}"
                ) from e
        elif isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim in (2, 3):
            image = data
        else:
            shape = getattr(data, "shape", None)
            raise DataError(
                f"cannot decode image {record_id(example)}: expected encoded bytes or a uint8 "
                f"array [H, W(, C)], got {type(data).__name__} {shape or ''}".rstrip()
            )
        image = _to_channels(image, channels)
        return _with(example, image=image)

    return op


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 [H, W] or [H, W, C] -> [H, W, channels]."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == channels:
        return image
    if image.shape[2] == 1 and channels == 3:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4 and channels == 3:
        return np.ascontiguousarray(image[..., :3])
    if image.shape[2] in (3, 4) and channels == 1:
        return np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3])).convert("L"))[
            ..., None
        ]
    raise ValueError(f"cannot make {image.shape[2]} channels into {channels}")


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
    out_h, out_w = _size_hw(size)
    area_min, area_max = _check_number("area_min", area_min), _check_number("area_max", area_max)
    ratio_min = _check_number("ratio_min", ratio_min)
    ratio_max = _check_number("ratio_max", ratio_max)
    if not 0 < area_min <= 1:
        raise ValueError(f"area_min must lie in (0, 1], got {area_min}")
    if not area_min <= area_max <= 1:
        raise ValueError(f"area_max must lie in [area_min, 1] = [{area_min}, 1], got {area_max}")
    if not 0 < ratio_min <= ratio_max:
        raise ValueError(
            f"need 0 < ratio_min <= ratio_max, got ratio_min={ratio_min}, ratio_max={ratio_max}"
        )

    def op(example: Example, rng: np.random.Generator) -> Example:
        image = _image(example, "inception_crop")
        top, left, h, w = inception_crop_box(
            image.shape[0], image.shape[1], rng, area_min, area_max, ratio_min, ratio_max
        )
        crop = image[top : top + h, left : left + w]
        return _with(example, image=resize_image(crop, out_h, out_w))

    return op


@register("resize")
def resize(size: int | Sequence[int]) -> OpFn:
    """Resizes to `size` (int or (h, w)), aspect ratio not kept."""
    out_h, out_w = _size_hw(size)

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        image = _image(example, "resize")
        return _with(example, image=resize_image(image, out_h, out_w))

    return op


@register("resize_small")
def resize_small(size: int) -> OpFn:
    """Resizes so that the shorter side is `size`, keeping the aspect ratio."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    size = int(size)

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        image = _image(example, "resize_small")
        h, w = image.shape[:2]
        scale = size / min(h, w)
        new_h = size if h <= w else int(round(h * scale))
        new_w = size if w <= h else int(round(w * scale))
        return _with(example, image=resize_image(image, new_h, new_w))

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
    h, w = _size_hw(size)

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        image = _image(example, "central_crop")
        _crop_fits(image, h, w, example, "central_crop")
        top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        return _with(example, image=image[top : top + h, left : left + w])

    return op


@register("random_crop")
def random_crop(size: int | Sequence[int]) -> OpFn:
    """Crops `size` (int or (h, w)) at a uniformly random place (draws top, then left)."""
    h, w = _size_hw(size)

    def op(example: Example, rng: np.random.Generator) -> Example:
        image = _image(example, "random_crop")
        _crop_fits(image, h, w, example, "random_crop")
        top = int(rng.integers(0, image.shape[0] - h + 1))
        left = int(rng.integers(0, image.shape[1] - w + 1))
        return _with(example, image=image[top : top + h, left : left + w])

    return op


@register("flip_lr")
def flip_lr(p: float = 0.5) -> OpFn:
    """Flips left-right with probability `p` (always one `rng.random()` draw)."""
    p = _check_number("p", p)
    if not 0 <= p <= 1:
        raise ValueError(f"p must lie in [0, 1], got {p}")

    def op(example: Example, rng: np.random.Generator) -> Example:
        image = _image(example, "flip_lr")
        if rng.random() < p:
            image = np.ascontiguousarray(image[:, ::-1])
        return _with(example, image=image)

    return op


@register("value_range")
def value_range(vmin: float = -1, vmax: float = 1, in_min: float = 0, in_max: float = 255) -> OpFn:
    """Maps the image linearly from [in_min, in_max] to [vmin, vmax], as float32."""
    vmin, vmax = _check_number("vmin", vmin), _check_number("vmax", vmax)
    in_min, in_max = _check_number("in_min", in_min), _check_number("in_max", in_max)
    if in_min == in_max:
        raise ValueError(f"in_min and in_max must differ, both are {in_min}")

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        image = _image(example, "value_range").astype(np.float32)
        image = (image - np.float32(in_min)) / np.float32(in_max - in_min)
        image = image * np.float32(vmax - vmin) + np.float32(vmin)
        return _with(example, image=image)

    return op


@register("onehot")
def onehot(
    depth: int,
    key: str = "label",
    key_result: str = "labels",
    on: float = 1.0,
    off: float = 0.0,
) -> OpFn:
    """`example[key]` (an int, or a list of ints for multi-hot) -> float32 [depth]."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive int, got {depth!r}")
    on, off = _check_number("on", on), _check_number("off", off)

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        labels = np.atleast_1d(np.asarray(example[key]))
        if labels.dtype.kind not in "iu" or labels.ndim != 1:
            raise ValueError(
                f"onehot: {key} of {record_id(example)} must be an int, got {example[key]!r}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= depth):
            raise ValueError(
                f"onehot: {key} {example[key]!r} of {record_id(example)} lies outside [0, {depth})"
            )
        out = np.full([depth], off, np.float32)
        out[labels] = on
        return _with(example, **{key_result: out})

    return op


@register("label_smoothing")
def label_smoothing(amount: float, key: str = "labels") -> OpFn:
    """Soft labels y -> y * (1 - amount) + amount / depth, depth = y.shape[-1]."""
    amount = _check_number("amount", amount)
    if not 0 <= amount < 1:
        raise ValueError(f"amount must lie in [0, 1), got {amount}")

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        labels = np.asarray(example[key], np.float32)
        depth = labels.shape[-1]
        smoothed = labels * np.float32(1 - amount) + np.float32(amount / depth)
        return _with(example, **{key: smoothed.astype(np.float32)})

    return op


@register("keep")
def keep(*keys: str) -> OpFn:
    """Keeps only the named keys (those present; big_vision's behaviour)."""
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"keep needs one or more key names (strings), got {keys!r}")

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        return {k: v for k, v in example.items() if k in keys}

    return op
