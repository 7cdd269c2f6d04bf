"""Training: state, optimizers, schedules, checkpoints, metric writing, the trainer."""

from framework.train import trainer  # noqa: F401  (registers the `default` trainer)
