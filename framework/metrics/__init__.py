"""Evaluation metrics computed on the host from decoded model outputs.

- `text_metrics`: the metrics of T5's text-to-text tasks (GLUE, SuperGLUE, SQuAD,
  TriviaQA), in percent, and the GLUE / SuperGLUE averages.
"""

from framework.metrics import text_metrics  # noqa: F401
