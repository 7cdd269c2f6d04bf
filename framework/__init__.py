"""Shared core: app entry, registries, data, models and training (no project code)."""
