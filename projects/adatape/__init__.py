"""AdaTape: tape banks, Adaptive Tape Reading, AdaTape-ViT and AdaTape-parity, and the
parity and images tables."""

from projects.adatape import (  # noqa: F401
    atr,
    encoder,
    image_table,
    paper_tables,
    parity_model,
    settings,
    tape_bank,
    tape_layers,
    vit_model,
)
