"""Reproduce a paper table: `python -m launch.reproduce TABLE --preset=quick|full --workdir=DIR`.

Tables: `parity` (AdaTape vs Transformer vs Universal Transformer), `parity_ablation`
(AdaTape on parity, one change per row), `altup` (T5 dense vs AltUp variants), `images`.
Finished runs in DIR are reused, so an interrupted reproduction resumes. `--rows=A,B`
runs and tabulates only those rows.
"""

from __future__ import annotations

from absl import flags

from framework import app, errors
from framework.config import registry
from framework.experiments import tables
from framework.train import workdir as workdir_lib  # also defines --accept_config_changes

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "quick", "Table preset, e.g. quick | full | tiny.")
flags.DEFINE_list(
    "rows",
    None,
    "Only these rows of the table (names or directory slugs), e.g. to rerun the "
    "rows a change affects; table.md then has only them.",
)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise errors.ConfigError(
            f"name one table: python -m launch.reproduce TABLE; known: "
            f"{', '.join(registry.TABLES.names())}"
        )
    workdir_lib.check_workdir(FLAGS.workdir)
    app.initialize_distributed()
    table = registry.TABLES.get(argv[1])(FLAGS.preset)
    if FLAGS.rows:
        table = tables.select_rows(table, FLAGS.rows)
    tables.run_table(table, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main, positional=True)
