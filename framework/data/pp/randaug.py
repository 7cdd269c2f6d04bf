"""RandAugment (Cubuk et al., 2020) on uint8 images with PIL, registered as `randaug`.

`num_layers` times, one of the 14 standard transformations is picked uniformly and
applied at a fixed `magnitude` on the paper's 0..30 scale; with f = magnitude / 30 the
strengths follow torchvision's `RandAugment` (31 magnitude bins):

| op | strength at f | signed |
| --- | --- | --- |
| Identity, AutoContrast, Equalize | none | |
| Rotate | 30 * f degrees | yes |
| ShearX, ShearY | shear 0.3 * f (about the image centre) | yes |
| TranslateX, TranslateY | 150/331 * f of the width / height (about 0.45 * size) | yes |
| Color, Contrast, Brightness, Sharpness | enhance factor 1 + 0.9 * f | yes |
| Posterize | keep 8 - round(4 * f) bits (8 down to 4) | |
| Solarize | invert pixels >= round(256 * (1 - f)) (none at f = 0, all at f = 1) | |

Signed ops take a random sign. Geometric ops fill uncovered pixels with grey 128 and
resample bilinearly. Each layer draws the op index, then a sign, from the generator, so
the result is a deterministic function of its state.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from framework.data.pp.checks import record_id
from framework.data.pp.registry import Example, OpFn, register

MAX_MAGNITUDE = 30
FILL = 128
_TRANSLATE_FRACTION = 150 / 331


def _fill(img: Image.Image) -> int | tuple[int, ...]:
    return FILL if len(img.getbands()) == 1 else (FILL,) * len(img.getbands())


def _affine(img: Image.Image, data: tuple[float, ...]) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, data, Image.BILINEAR, fillcolor=_fill(img))


def _identity(img: Image.Image, f: float, sign: int) -> Image.Image:
    return img


def _auto_contrast(img: Image.Image, f: float, sign: int) -> Image.Image:
    return ImageOps.autocontrast(img)


def _equalize(img: Image.Image, f: float, sign: int) -> Image.Image:
    return ImageOps.equalize(img)


def _rotate(img: Image.Image, f: float, sign: int) -> Image.Image:
    return img.rotate(sign * 30.0 * f, resample=Image.BILINEAR, fillcolor=_fill(img))


def _solarize(img: Image.Image, f: float, sign: int) -> Image.Image:
    return ImageOps.solarize(img, threshold=int(round(256 * (1 - f))))


def _posterize(img: Image.Image, f: float, sign: int) -> Image.Image:
    return ImageOps.posterize(img, 8 - int(round(4 * f)))


def _enhancer(kind: type) -> Callable[[Image.Image, float, int], Image.Image]:
    def apply(img: Image.Image, f: float, sign: int) -> Image.Image:
        return kind(img).enhance(1.0 + sign * 0.9 * f)

    return apply


def _shear_x(img: Image.Image, f: float, sign: int) -> Image.Image:
    shear = sign * 0.3 * f
    return _affine(img, (1, shear, -shear * img.height / 2, 0, 1, 0))


def _shear_y(img: Image.Image, f: float, sign: int) -> Image.Image:
    shear = sign * 0.3 * f
    return _affine(img, (1, 0, 0, shear, 1, -shear * img.width / 2))


def _translate_x(img: Image.Image, f: float, sign: int) -> Image.Image:
    return _affine(img, (1, 0, sign * _TRANSLATE_FRACTION * f * img.width, 0, 1, 0))


def _translate_y(img: Image.Image, f: float, sign: int) -> Image.Image:
    return _affine(img, (1, 0, 0, 0, 1, sign * _TRANSLATE_FRACTION * f * img.height))


# The 14 transformations of the paper, in a fixed order (the op index draws from it).
TRANSFORMS: dict[str, Callable[[Image.Image, float, int], Image.Image]] = {
    "Identity": _identity,
    "AutoContrast": _auto_contrast,
    "Equalize": _equalize,
    "Rotate": _rotate,
    "Solarize": _solarize,
    "Color": _enhancer(ImageEnhance.Color),
    "Posterize": _posterize,
    "Contrast": _enhancer(ImageEnhance.Contrast),
    "Brightness": _enhancer(ImageEnhance.Brightness),
    "Sharpness": _enhancer(ImageEnhance.Sharpness),
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "TranslateX": _translate_x,
    "TranslateY": _translate_y,
}
_TRANSFORM_LIST = tuple(TRANSFORMS.values())


def randaugment(
    image: np.ndarray, rng: np.random.Generator, num_layers: int, magnitude: float
) -> np.ndarray:
    """RandAugment of a uint8 image [H, W, 1 or 3]; returns a new array of the same shape."""
    grey = image.shape[2] == 1
    img = Image.fromarray(image[..., 0] if grey else image)
    f = magnitude / MAX_MAGNITUDE
    for _ in range(num_layers):
        transform = _TRANSFORM_LIST[int(rng.integers(len(_TRANSFORM_LIST)))]
        sign = 1 if rng.random() < 0.5 else -1
        img = transform(img, f, sign)
    out = np.asarray(img)
    return out[..., None] if grey else out


@register("randaug")
def randaug(num_layers: int = 2, magnitude: float = 10) -> OpFn:
    """RandAugment with `num_layers` ops at `magnitude` in [0, 30]; uint8 RGB or grey input."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
        raise ValueError(f"num_layers must be an int >= 0, got {num_layers!r}")
    if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)):
        raise ValueError(f"magnitude must be a number, got {magnitude!r}")
    if not 0 <= magnitude <= MAX_MAGNITUDE:
        raise ValueError(f"magnitude must lie in [0, {MAX_MAGNITUDE}], got {magnitude}")

    def op(example: Example, rng: np.random.Generator) -> Example:
        image = example.get("image")
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 3
            or image.shape[2] not in (1, 3)
        ):
            shape = getattr(image, "shape", type(image).__name__)
            dtype = getattr(image, "dtype", "")
            raise ValueError(
                f"randaug: expected a uint8 image [H, W, 1 or 3] in {record_id(example)}, "
                f"got {shape} {dtype} (put randaug before value_range)"
            )
        return {**example, "image": randaugment(image, rng, num_layers, float(magnitude))}

    return op
