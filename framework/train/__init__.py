"""Training: state, optimizers, schedules, checkpoints, metric writing, the trainer."""
