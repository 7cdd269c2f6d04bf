"""Baselines that are not core architectures: Universal Transformer / UViT with ACT."""

from projects.baselines import act, models, universal  # noqa: F401
