"""Input pipeline and the registered datasets."""

from framework.data import images, parity, pipeline, random_data  # noqa: F401
from framework.data.text import dataset as text_dataset  # noqa: F401
from framework.data.text import task_dataset  # noqa: F401
