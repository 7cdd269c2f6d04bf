"""AdaTape: tape banks, Adaptive Tape Reading, AdaTape-ViT and AdaTape-parity, the
parity, parity ablation and images tables."""

from projects.adatape import (  # noqa: F401
    atr,
    encoder,
    evaluators,
    image_table,
    paper_tables,
    parity_ablation,
    parity_model,
    settings,
    tape_bank,
    tape_layers,
    vit_model,
)
