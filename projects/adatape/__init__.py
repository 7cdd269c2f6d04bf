"""AdaTape: tape banks, Adaptive Tape Reading, AdaTape-ViT and AdaTape-parity."""

from projects.adatape import (  # noqa: F401
    atr,
    encoder,
    paper_tables,
    parity_model,
    settings,
    tape_bank,
    tape_layers,
    vit_model,
)
