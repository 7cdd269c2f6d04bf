"""Run budgets: "train this config for N steps", one rule for every table, benchmark and sweep.

A budget sets the number of steps and the cadence of logs, evaluations and checkpoints
to fit it, and either fits the learning-rate schedule to the new length (warm-up at
most a tenth of it, decay ending at its last step) or keeps the schedule of the
config's own run, cut short (a benchmark timing a few steps of a long run).
"""

from __future__ import annotations

import dataclasses

import ml_collections

from framework.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RunBudget:
    """How long a run trains and how often it logs, evaluates and checkpoints.

    steps: training steps.
    keep_schedule: False: warm-up `warmup_steps` (default the config's, at most
        steps // 10) and decay over `steps`; True: the config's schedule unchanged
        (decay still over the config's own `num_train_steps`), `warmup_steps` ignored.
    warmup_steps: an explicit warm-up (e.g. the rsqrt schedule's constant phase).
    evals: evaluations, evenly spaced, the last at the end (1: only at the end).
    checkpoints: checkpoints, evenly spaced, the last at the end.
    logs: at least this many log lines (the config's cadence if it logs more often).
    None for `evals`, `checkpoints` or `logs` keeps the config's cadence.
    """

    steps: int
    keep_schedule: bool = False
    warmup_steps: int | None = None
    evals: int | None = 1
    checkpoints: int | None = 2
    logs: int | None = 10

    def __post_init__(self):
        if self.steps < 1:
            raise ConfigError(f"a run budget needs at least one step, got {self.steps}")
        for name in ("evals", "checkpoints", "logs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"budget {name} must be positive or None, got {value}")

    def apply(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """A copy of `config` that trains for this budget."""
        c = config.copy_and_resolve_references()
        n = self.steps
        with c.unlocked():
            if self.keep_schedule:
                c.lr.decay_steps = c.lr.decay_steps or c.num_train_steps
            else:
                c.lr.decay_steps = 0  # 0: the run's num_train_steps
                default_warmup = min(c.lr.warmup_steps, n // 10)
                c.lr.warmup_steps = (
                    default_warmup if self.warmup_steps is None else self.warmup_steps
                )
            c.num_train_steps = n
            if self.evals is not None:
                c.eval_every_steps = 0 if self.evals == 1 else max(n // self.evals, 1)
            if self.checkpoints is not None:
                c.checkpoint_every_steps = max(n // self.checkpoints, 1)
            if self.logs is not None:
                c.log_every_steps = min(c.log_every_steps, max(n // self.logs, 1))
        return c
