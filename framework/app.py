"""The absl entry point shared by the launch commands.

Flags: `--config` (an ml_collections config file, `path.py:arg` for presets, fields
overridable as `--config.FIELD=VALUE`), `--workdir`, and multi-host set-up. On TPU VMs
(and SLURM clusters) `jax.distributed.initialize()` finds its peers by itself; elsewhere
pass `--coordinator_address`, `--num_processes` and `--process_id`.

Bad input (a `ConfigError`) ends the program with one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before clu imports TensorFlow
from typing import Callable

from absl import app, flags, logging
from ml_collections import config_flags

from framework.errors import ConfigError

FLAGS = flags.FLAGS

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and events.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
flags.DEFINE_integer("process_id", None, "Index of this process (multi-host).")
flags.DEFINE_enum(
    "multihost",
    "auto",
    ["auto", "on", "off"],
    "auto: initialise jax.distributed on TPU VMs / SLURM, or when --coordinator_address is given.",
)

_CLUSTER_ENV = (
    "TPU_WORKER_HOSTNAMES",
    "CLOUD_TPU_TASK_ID",
    "SLURM_JOB_ID",
    "MEGASCALE_COORDINATOR_ADDRESS",
)


def initialize_distributed() -> None:
    """Starts jax.distributed when running on several hosts."""
    import jax

    if FLAGS.multihost == "off":
        return
    if FLAGS.coordinator_address:
        jax.distributed.initialize(
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
        )
    elif FLAGS.multihost == "on" or any(k in os.environ for k in _CLUSTER_ENV):
        jax.distributed.initialize()
    if jax.process_count() > 1:
        logging.info("Process %d of %d", jax.process_index(), jax.process_count())


def config():
    return _CONFIG.value


def run(main: Callable[..., None], positional: bool = False) -> None:
    """Parses flags and runs `main()` (`main(argv)` with `positional`); a ConfigError
    becomes a one-line exit."""

    def _main(argv):
        if len(argv) > 1 and not positional:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        if not FLAGS["verbosity"].present:
            # Progress lines are printed; library INFO logs only with --verbosity=0.
            logging.set_verbosity(logging.WARNING)
        try:
            main(argv) if positional else main()
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    app.run(_main, flags_parser=parse_flags)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with config-file and override errors reduced to one line."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # A config file that raised: keep the flag and the exception's own line.
        message = f"{lines[0]} {lines[-1]}" if len(lines) > 1 else "".join(lines)
    except (AttributeError, KeyError) as e:
        # ml_collections reports a missing field as AttributeError("'name'"), sometimes
        # with a suggestion.
        text = str(e).replace("\\n", " ")
        field = re.findall(r"[A-Za-z_]\w*", text)[0]
        hint = re.search(r'Did you mean "(\w+)"', text)
        overrides = [a for a in argv if a.startswith("--config.") and field in a]
        where = overrides[0] if overrides else "--config"
        message = f"{where}: no config field {field!r}" + (
            f" (did you mean {hint.group(1)!r}?)" if hint else ""
        )
    except (TypeError, ValueError) as e:
        message = f"bad --config or override: {type(e).__name__}: {e}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
