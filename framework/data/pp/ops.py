"""Per-example preprocessing ops on values: decode, value range, labels, keep.

Each op is registered as a factory: `factory(*args, **kwargs)` checks its arguments and
returns `op(example, rng) -> example`. Images are numpy arrays [H, W, C] (uint8 after
`decode`, float32 after `value_range`). Pure numpy and PIL, so the ops run in data
worker processes without TensorFlow or JAX. Crops, resizes and flips are in
`geometry`, RandAugment in `randaug`, the checks every op makes in `checks`.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from framework.data.pp.checks import check_number, image_of, record_id, with_changes
from framework.data.pp.registry import Example, OpFn, register
from framework.errors import DataError


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
        return with_changes(example, image=image)

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


@register("value_range")
def value_range(vmin: float = -1, vmax: float = 1, in_min: float = 0, in_max: float = 255) -> OpFn:
    """Maps the image linearly from [in_min, in_max] to [vmin, vmax], as float32."""
    vmin, vmax = check_number("vmin", vmin), check_number("vmax", vmax)
    in_min, in_max = check_number("in_min", in_min), check_number("in_max", in_max)
    if in_min == in_max:
        raise ValueError(f"in_min and in_max must differ, both are {in_min}")

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        image = image_of(example, "value_range").astype(np.float32)
        image = (image - np.float32(in_min)) / np.float32(in_max - in_min)
        image = image * np.float32(vmax - vmin) + np.float32(vmin)
        return with_changes(example, image=image)

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
    on, off = check_number("on", on), check_number("off", off)

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
        return with_changes(example, **{key_result: out})

    return op


@register("label_smoothing")
def label_smoothing(amount: float, key: str = "labels") -> OpFn:
    """Soft labels y -> y * (1 - amount) + amount / depth, depth = y.shape[-1]."""
    amount = check_number("amount", amount)
    if not 0 <= amount < 1:
        raise ValueError(f"amount must lie in [0, 1), got {amount}")

    def op(example: Example, rng: np.random.Generator) -> Example:
        del rng
        labels = np.asarray(example[key], np.float32)
        depth = labels.shape[-1]
        smoothed = labels * np.float32(1 - amount) + np.float32(amount / depth)
        return with_changes(example, **{key: smoothed.astype(np.float32)})

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
