"""AdaTape's rows of the `scale` table: the released ImageNet recipe (224 px, batch
4096, bfloat16) for AdaTape-ViT beside ViT, UViT, U2T and A-ViT, compiled for a v4-32
and for a host of 8 H100s (data parallel over every device).
"""

from __future__ import annotations

from framework.config import registry
from framework.experiments.scale_table import ScaleRow

# (row name, config file, sizes it has); ViT is each size's baseline. UViT, U2T and
# A-ViT exist at S/16 only (as in the papers compared).
MODELS = (
    ("ViT", "configs/baselines/vit.py", ("S/16", "B/16")),
    ("AdaTape", "configs/adatape/imagenet.py", ("S/16", "B/16")),
    ("UViT", "configs/baselines/uvit.py", ("S/16",)),
    ("U2T", "configs/baselines/u2t.py", ("S/16",)),
    ("A-ViT", "configs/baselines/avit.py", ("S/16",)),
)
SIZES = {"quick": ("S/16",), "full": ("S/16", "B/16")}
TARGETS = {"quick": ("v4-32",), "full": ("v4-32", "h100x8")}


@registry.SCALE_ROWS.register("adatape")
def rows(preset: str) -> list[ScaleRow]:
    """AdaTape (Xue et al., 2023): adaptivity in the sequence (a few tape tokens) rather
    than in depth makes AdaTape cheaper on accelerators than the adaptive-depth
    baselines (UViT, U2T, A-ViT) at a better quality/cost trade-off."""
    out = []
    for target in TARGETS.get(preset, ()):
        for size in SIZES.get(preset, ()):
            for name, path, sizes in MODELS:
                if size in sizes:
                    out.append(
                        ScaleRow(
                            f"{name}-{size}", f"{path}:{size},data=random", target,
                            f"ViT-{size}", name == "ViT", ("--config.model.dtype=bfloat16",),
                        )
                    )  # fmt: skip
    return out
