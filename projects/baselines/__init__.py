"""Baselines that are not core architectures: Universal Transformer / UViT / U2T with ACT,
and A-ViT."""

from projects.baselines import act, avit, models, universal  # noqa: F401
