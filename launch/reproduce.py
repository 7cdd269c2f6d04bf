"""Reproduce a paper table: `python -m launch.reproduce TABLE --preset=quick|full --workdir=DIR`.

Tables: `parity` (AdaTape vs Transformer vs Universal Transformer), `parity_ablation`
(AdaTape on parity, one change per row), `altup` (T5 dense vs AltUp variants), `images`,
`scale` (the papers' full-size configs compiled for their hardware: memory, FLOPs and
roofline step time, no training; `--parallel=N` compiles N at a time).
Finished runs in DIR are reused, so an interrupted reproduction resumes. `--rows=A,B`
runs and tabulates only those rows. `--parallel=N` trains the runs as N `launch.train`
processes at a time (on a GPU host each with its own GPUs; each run's log in its
directory), then tabulates them; without it they train one after another in this
process. With `--parallel`, a run whose workdir a live process still holds (this command
was killed while it trained) is not started again: `--wait` waits for it, otherwise the
command ends with exit status 1 saying how many are still running.
"""

from __future__ import annotations

from absl import flags

from framework import app, errors
from framework.config import registry
from framework.experiments import tables
from framework.launchers import local
from framework.train import run_config  # noqa: F401  (defines --accept_config_changes)
from framework.train import workdir as workdir_lib

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "quick", "Table preset, e.g. quick | full | tiny.")
flags.DEFINE_list(
    "rows",
    None,
    "Only these rows of the table (names or directory slugs), e.g. to rerun the "
    "rows a change affects; table.md then has only them.",
)


flags.DEFINE_integer(
    "parallel",
    0,
    "Train the table's runs as N local launch.train processes at a time, then tabulate; "
    "0: one after another in this process.",
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
    if not isinstance(table, tables.Table):  # not training runs, e.g. the `scale` compiles
        table.reproduce(FLAGS.workdir, FLAGS.parallel)
        return
    if FLAGS.parallel:
        jobs = tables.jobs(table, FLAGS.workdir)
        counts = local.run_local(jobs, FLAGS.parallel, what="table", wait=local.wait_flag())
        local.check_all_done(counts, FLAGS.workdir)
    tables.run_table(table, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main, positional=True)
