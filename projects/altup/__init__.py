"""AltUp (Baykal et al., NeurIPS 2023): layers, T5 adapters, the `t5_altup` model and
the `altup` paper table."""

from projects.altup import adapters, layers, model, paper_tables  # noqa: F401
