"""Input pipeline and the registered datasets."""

from framework.data import parity, pipeline, random_images  # noqa: F401
