"""Base model classes, shared layers and the core architectures (registered by name)."""

from framework.models import base, classifier, layers, t5, transformer, vit  # noqa: F401
