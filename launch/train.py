"""One training run.

  python -m launch.train --config=configs/parity/transformer.py:smoke --workdir=DIR \
      [--config.FIELD=VALUE ...]
"""

from __future__ import annotations

from absl import flags

from framework import app, config_schema, errors
from framework.train import workdir  # noqa: F401  (defines --accept_config_changes)

FLAGS = flags.FLAGS


def main() -> None:
    app.check_workdir(FLAGS.workdir)
    if app.config() is None:
        raise errors.ConfigError("--config is required")
    app.initialize_distributed()
    config = app.config()
    config_schema.trainer(config)(config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
