"""AltUp's rows of the `scale` table: T5.1.1 Small to XL, dense, AltUp K=2,
Recycled-AltUp, Sequence-AltUp and dense 2x wide, at the paper's recipe (batch 256,
inputs 512 / targets 114, Adafactor, bfloat16), compiled for TPUv3-8 (the paper's
latency hardware) and a v4-32 with the layouts of `configs/altup/t5.py: TARGET_LAYOUTS`.
"""

from __future__ import annotations

from framework.config import registry
from framework.experiments.scale_table import ScaleRow

# (row name, config tokens); the first is each size's baseline.
VARIANTS = (
    ("Dense", "dense"),
    ("AltUp K=2", "altup,k=2"),
    ("Recycled-AltUp K=2", "recycled,k=2"),
    ("Sequence-AltUp stride 2", "sequence,stride=2"),
    ("Dense 2x wide", "dense,width=2"),
)
SIZES = {"quick": ("base", "large"), "full": ("small", "base", "large", "xl")}
TARGETS = {"quick": ("v3-8",), "full": ("v3-8", "v4-32")}


@registry.SCALE_ROWS.register("altup")
def rows(preset: str) -> list[ScaleRow]:
    """AltUp (Baykal et al., 2023): AltUp K=2 and Recycled-AltUp widen the representation
    at about the dense model's step time (latency on TPUv3-8); a dense model with
    K-times wider layers costs several times more per step."""
    out = []
    for target in TARGETS.get(preset, ()):
        for size in SIZES.get(preset, ()):
            group = f"T5-{size.upper() if size == 'xl' else size.capitalize()}"
            for index, (name, tokens) in enumerate(VARIANTS):
                config = f"configs/altup/t5.py:{size},{tokens},bf16,data=random,target={target}"
                out.append(ScaleRow(f"{group} {name}", config, target, group, index == 0))
    return out
