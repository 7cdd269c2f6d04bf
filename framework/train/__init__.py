"""Training: state, optimizers, schedules, checkpoints, metric writing, the trainer and
its evaluators.

`REGISTERED` says which module registers each trainer and evaluator, so that a lookup
imports only it (see `framework.config.registry`).
"""

REGISTERED = {
    "trainer": {"default": "framework.train.trainer"},
    "evaluator": {
        "decoding": "framework.train.evaluators.decoding",
        "metrics": "framework.train.evaluators.metrics",
    },
}
