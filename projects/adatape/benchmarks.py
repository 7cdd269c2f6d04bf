"""AdaTape's `launch.benchmark` mode: train-step times against its image baselines.

  python -m launch.benchmark --mode=adatape [--batch_size=8 --image_size=224 --steps=3]

`--mode=adatape`: train-step time of AdaTape-ViT-S/16 against ViT-S/16 and UViT-S/16
(ACT) on random `--image_size` images (224 px by default), from their ImageNet configs
with `data=random`, batch `--batch_size` (8), `--steps` (3) per round, each relative
to ViT-S/16.
"""

from __future__ import annotations

from framework.config import loader, registry
from framework.experiments import step_timing
from framework.experiments.step_timing import BenchmarkArgs

REFERENCE = "ViT-S/16"
MODELS = {
    REFERENCE: "configs/baselines/vit.py:S/16,data=random",
    "UViT-S/16 (ACT)": "configs/baselines/uvit.py:S/16,data=random",
    "AdaTape-ViT-S/16": "configs/adatape/imagenet.py:S/16,data=random",
}
IMAGE_SIZE = 224


@registry.BENCHMARKS.register("adatape")
def adatape_mode(args: BenchmarkArgs) -> None:
    """Step times of AdaTape-ViT-S/16, ViT-S/16 and UViT-S/16 on random images."""
    batch_size, steps = args.batch_size or 8, args.steps or 3
    image_size = args.image_size or IMAGE_SIZE
    configs = {
        name: loader.load_config(
            spec,
            batch_size=batch_size,
            eval_batch_size=batch_size,
            **{"dataset.image_size": image_size},
        )
        for name, spec in MODELS.items()
    }
    print(
        f"batch {batch_size}, {image_size} px random images, {step_timing.platform()}; "
        f"{args.rounds} rounds of {steps} steps",
        flush=True,
    )
    step_timing.print_comparison(configs, steps, args, REFERENCE)
