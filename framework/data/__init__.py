"""Input pipeline and the registered datasets."""

from framework.data import parity, pipeline  # noqa: F401
