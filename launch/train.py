"""One training run.

  python -m launch.train --config=configs/parity/transformer.py:smoke --workdir=DIR \
      [--config.FIELD=VALUE ...]
"""

from __future__ import annotations

from absl import flags

from framework import app, errors
from framework.config import schema
from framework.train import run_config  # noqa: F401  (defines --accept_config_changes)
from framework.train import workdir as workdir_lib

FLAGS = flags.FLAGS


def main() -> None:
    workdir_lib.check_workdir(FLAGS.workdir)
    if app.config() is None:
        raise errors.ConfigError("--config is required")
    app.initialize_distributed()
    config = app.config()
    schema.trainer(config)(config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
