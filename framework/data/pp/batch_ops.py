"""Batch-level augmentation: mixup and cutmix (timm style), in numpy.

One mixing weight lam ~ Beta(alpha, alpha) per batch; each row is mixed with the row at
the mirrored position (the batch reversed), so no permutation has to be drawn or stored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from framework.errors import ConfigError

Batch = dict[str, Any]


def cutmix_box(
    height: int, width: int, lam: float, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A box (y0, y1, x0, x1) of area about (1 - lam) of the image, centred at random.

    The sides are sqrt(1 - lam) of the image's; the centre is drawn uniformly (row, then
    column) and the box clipped to the image, so its exact area may be smaller.
    """
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


def mixup(
    batch: Batch,
    rng: np.random.Generator,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    switch_prob: float = 0.5,
    key_image: str = "image",
    key_labels: str = "labels",
) -> Batch:
    """Mixup or cutmix of a batch: images [B, H, W, C], soft labels [B, K].

    Draws (in order): when both alphas are > 0, `rng.random() < switch_prob` chooses
    cutmix; then lam = rng.beta(alpha, alpha); for cutmix, the box centre. Mixup:
    x -> lam * x + (1 - lam) * x[::-1], labels alike. Cutmix: a box of area about
    (1 - lam) pasted from x[::-1], lam corrected to the exact kept fraction, labels mixed
    with it. Labels that sum to 1 per row still do. Returns a new dict; the other keys
    are kept as they are. With both alphas 0 the batch comes back unchanged.
    """
    if mixup_alpha < 0 or cutmix_alpha < 0 or not 0 <= switch_prob <= 1:
        raise ValueError(
            "need mixup_alpha >= 0, cutmix_alpha >= 0 and 0 <= switch_prob <= 1, got "
            f"{mixup_alpha}, {cutmix_alpha}, {switch_prob}"
        )
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return dict(batch)
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = bool(rng.random() < switch_prob)
    else:
        use_cutmix = cutmix_alpha > 0
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))

    images = np.asarray(batch[key_image])
    labels = np.asarray(batch[key_labels], np.float32)
    if images.ndim != 4 or labels.ndim != 2 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"mixup needs {key_image} [B, H, W, C] and {key_labels} [B, K], got "
            f"{images.shape} and {labels.shape}"
        )
    if use_cutmix:
        height, width = images.shape[1:3]
        y0, y1, x0, x1 = cutmix_box(height, width, lam, rng)
        mixed = images.copy()
        mixed[:, y0:y1, x0:x1] = images[::-1, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
    else:
        if not np.issubdtype(images.dtype, np.floating):
            images = images.astype(np.float32)
        mixed = lam * images + (1.0 - lam) * images[::-1]
    mixed_labels = lam * labels + (1.0 - lam) * labels[::-1]
    return {**batch, key_image: mixed, key_labels: mixed_labels}


@dataclasses.dataclass(frozen=True)
class MixupSettings:
    """Mixup / cutmix settings (`config.dataset.mixup`), checked once when built."""

    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    switch_prob: float = 0.5

    def __post_init__(self):
        for name in ("mixup_alpha", "cutmix_alpha", "switch_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"dataset.mixup.{name}: must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"dataset.mixup.{name}: must be >= 0, got {value}")
        if self.switch_prob > 1:
            raise ConfigError(
                f"dataset.mixup.switch_prob: must lie in [0, 1], got {self.switch_prob}"
            )

    @property
    def enabled(self) -> bool:
        """Whether mixup or cutmix is applied at all."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def apply(self, batch: Batch, rng: np.random.Generator, **keys: str) -> Batch:
        """`mixup(batch, rng, ...)` with these settings (`keys`: key_image, key_labels)."""
        return mixup(
            batch,
            rng,
            mixup_alpha=self.mixup_alpha,
            cutmix_alpha=self.cutmix_alpha,
            switch_prob=self.switch_prob,
            **keys,
        )
