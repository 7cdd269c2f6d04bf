"""Training: state, optimizers, schedules, the experiment (`experiment`), its steps
(`steps`), the trainer and its evaluators, checkpoints, the workdir (`workdir`: lock and
checks; `run_config`: the saved config), metric writing and the run record.

`REGISTERED` says which module registers each trainer and evaluator, so that a lookup
imports only it (see `framework.config.registry`).
"""

REGISTERED = {
    "trainer": {"default": "framework.train.trainer"},
    "evaluator": {
        "decoding": "framework.train.evaluators.decoding",
        "metrics": "framework.train.evaluators.metrics",
    },
    "benchmark mode": {"scale": "framework.experiments.scale_benchmark"},
    "table": {"scale": "framework.experiments.scale_table"},
}
