"""Evaluate a run's checkpoint with the run's evaluators (`config.evals`).

  python -m launch.evaluate --workdir=DIR [--checkpoint=STEP]
  python -m launch.evaluate --workdir=DIR --config=configs/altup/finetune.py:task=polarity \
      --config.evals.decode.method=beam --config.evals.decode.beam_size=4

Without `--config` the run's own `DIR/config.json` is used (one written before
`config.evals` existed is read with its `decode.*` as a `decoding` entry); with it (to
change how the run is evaluated, e.g. the decoding), the config must build the same
model as the checkpoint's (a parameter of another shape is one line naming it).

Restores the parameters of DIR's latest checkpoint (or STEP) and runs every evaluator of
`config.evals`, as the trainer does at its last step: the model's metrics and, for a
text task with a `decoding` entry, decoding and scoring. The metrics are appended to
DIR/metrics.jsonl (split `evaluate`) and written to TensorBoard (DIR/evaluate); the
decodes go to DIR/decodes/<task>/<step>.evaluate.jsonl, beside (not over) the training
run's <step>.jsonl.
"""

from __future__ import annotations

import os

import jax
from absl import flags

from framework import app
from framework.train import checkpoints, evaluators, metric_writing, run_config
from framework.train import experiment as experiment_lib
from framework.train import workdir as workdir_lib

FLAGS = flags.FLAGS
# The decodes of an evaluation go beside the training run's own, not over them.
SUFFIX = ".evaluate"
flags.DEFINE_integer("checkpoint", None, "The step to evaluate (default: the latest).")


def main() -> None:
    workdir_lib.check_workdir(FLAGS.workdir)
    config = app.config() or run_config.saved_config(FLAGS.workdir)
    app.initialize_distributed()
    experiment = experiment_lib.build_experiment(config)
    evals = evaluators.from_config(experiment, FLAGS.workdir, suffix=SUFFIX)
    state, step = checkpoints.restore_state(
        FLAGS.workdir,
        experiment.abstract_state,
        FLAGS.checkpoint,
        advice="evaluate it with its own config (omit --config)",
    )
    result = evaluators.run(evals, state.params, step)
    writer = metric_writing.MetricWriter(
        FLAGS.workdir, resumed_step=None, tensorboard_dir=os.path.join(FLAGS.workdir, "evaluate")
    )
    writer.write(step, "evaluate", result.scalars, result.histograms)
    writer.close()
    if jax.process_index() == 0:
        shown = " ".join(f"{k}={v:.4g}" for k, v in result.scalars.items())
        print(f"step {step}: {shown}", flush=True)


if __name__ == "__main__":
    app.run(main)
