"""AltUp (Baykal et al., NeurIPS 2023): layers, T5 adapters and the `t5_altup` model."""

from projects.altup import adapters, layers, model  # noqa: F401
