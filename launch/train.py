"""One training run.

  python -m launch.train --config=configs/parity/transformer.py:smoke --workdir=DIR \
      [--config.FIELD=VALUE ...]
"""

from __future__ import annotations

from absl import flags

from framework import app, config_schema, errors

FLAGS = flags.FLAGS


def main() -> None:
    if not FLAGS.workdir:
        raise errors.ConfigError("--workdir is required")
    if app.config() is None:
        raise errors.ConfigError("--config is required")
    app.initialize_distributed()
    config = app.config()
    config_schema.trainer(config)(config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
