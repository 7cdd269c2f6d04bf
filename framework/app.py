"""The absl entry point shared by the launch commands.

Flags: `--config` (an ml_collections config file, `path.py:arg` for presets, fields
overridable as `--config.FIELD=VALUE`), `--workdir`, and multi-host set-up. On TPU VMs
(and SLURM clusters) `jax.distributed.initialize()` finds its peers by itself; elsewhere
pass `--coordinator_address`, `--num_processes` and `--process_id`. Each process of a
multi-host run runs under a supervisor (`framework.launchers.multihost`): when a process
is lost, the others stop within `--lost_host_timeout` seconds with one line naming it,
and exit with status 3.

Bad input (a `ConfigError`: a config file that is missing or raises, an unknown key, a
bad value, an unusable workdir, a stray argument) ends the program with one line on
stderr, `error: ...`, and exit status 2; a run that cannot go on (a `RunError`) with
one line and exit status 1.
"""

from __future__ import annotations

import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before clu imports TensorFlow
from typing import Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from framework import host_env
from framework.config import loader
from framework.errors import ConfigError, RunError
from framework.launchers import multihost

FLAGS = flags.FLAGS

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, `path.py` or `path.py:arg`.", lock_config=True
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
flags.DEFINE_integer(
    "lost_host_timeout",
    multihost.DEFAULT_TIMEOUT,
    "Multi-host: seconds without a heartbeat from a process before the others stop, "
    "naming it (the JAX coordination service's heartbeat timeout).",
    lower_bound=1,
)

_CLUSTER_ENV = (
    "TPU_WORKER_HOSTNAMES",
    "CLOUD_TPU_TASK_ID",
    "SLURM_JOB_ID",
    "MEGASCALE_COORDINATOR_ADDRESS",
)

# ---------------------------------------------------------------- the config file


class _ConfigFileError(Exception):
    """A config file that cannot give a config (not a ValueError, so that absl passes
    it through unchanged instead of wrapping it in a multi-line flag error)."""


class _ConfigFileParser(flags.ArgumentParser):
    """`--config=path.py[:arg]` -> the locked ConfigDict of `get_config(arg)`."""

    def parse(self, argument):
        if isinstance(argument, ml_collections.ConfigDict):  # set in code
            return argument
        try:
            return loader.load_config_file(argument)
        except ConfigError as e:
            raise _ConfigFileError(str(e)) from None

    def flag_type(self):
        return "config object"


# ml_collections' flag keeps its handling of `--config.FIELD=VALUE` overrides; only the
# loading of the file is ours, for one-line errors that name the file and line.
FLAGS["config"].parser = _ConfigFileParser()


# ---------------------------------------------------------------- running

_AS_COMMAND = False  # set by `run`: only a command line supervises itself, not a test


def initialize_distributed() -> None:
    """Starts jax.distributed when running on several hosts.

    A command started by `run` first becomes the supervisor of a copy of itself (see
    `framework.launchers.multihost`) and ends with that copy's exit status; the copy
    initialises jax.distributed with `--lost_host_timeout` as the heartbeat and shutdown
    timeouts.
    """
    import jax

    if FLAGS.multihost == "off":
        return
    auto = FLAGS.multihost == "on" or any(k in os.environ for k in _CLUSTER_ENV)
    if not (FLAGS.coordinator_address or auto):
        return
    timeout = FLAGS.lost_host_timeout
    if _AS_COMMAND and not multihost.is_supervised():
        sys.exit(multihost.supervise(sys.orig_argv, FLAGS.workdir, timeout))
    multihost.adopt()  # in a supervised copy
    timeouts = dict(heartbeat_timeout_seconds=timeout, shutdown_timeout_seconds=timeout)
    if FLAGS.coordinator_address:
        jax.distributed.initialize(
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
            **timeouts,
        )
    else:
        jax.distributed.initialize(**timeouts)
    if jax.process_count() > 1:
        logging.info("Process %d of %d", jax.process_index(), jax.process_count())
        multihost.announce(timeout)  # to the supervisor, if any


def config():
    return _CONFIG.value


def _exit(message: str, status: int) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def run(main: Callable[..., None], positional: bool = False) -> None:
    """Parses flags and runs `main()` (`main(argv)` with `positional`).

    A ConfigError (bad input) becomes one line on stderr and exit status 2, a RunError
    (a run that cannot go on) one line and exit status 1.
    """

    global _AS_COMMAND
    _AS_COMMAND = True  # a command line: a multi-host run may supervise itself
    host_env.quiet()  # before JAX starts its backends

    def _main(argv):
        if len(argv) > 1 and not positional:
            extra = " ".join(argv[1:])
            _exit(f"unexpected argument(s): {extra} (flags take the form --name=value)", 2)
        if not FLAGS["verbosity"].present:
            # Progress lines are printed; library INFO logs only with --verbosity=0.
            logging.set_verbosity(logging.WARNING)
        try:
            main(argv) if positional else main()
        except ConfigError as e:
            _exit(str(e), 2)
        except RunError as e:
            _exit(str(e), 1)
        except Exception as e:
            multihost.await_verdict(e, FLAGS.lost_host_timeout)  # a lost peer ends it here
            raise

    app.run(_main, flags_parser=parse_flags)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing, with config-file and override errors reduced to one line."""
    try:
        return FLAGS(argv)
    except _ConfigFileError as e:
        message = str(e)
    except flags.Error as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        # A flag with a bad value: keep the flag and the exception's own line.
        message = f"{lines[0]} {lines[-1]}" if len(lines) > 1 else "".join(lines)
    except (AttributeError, KeyError) as e:
        # An override of a field that does not exist: ml_collections says which as
        # AttributeError("'name'") or KeyError('Key "name" does not exist ...'), sometimes
        # with a suggestion.
        text = str(e).replace("\\n", " ")
        lookup = re.search(r"Attempting to lookup: ([\w.]+)", text)
        if lookup:  # a field under a value that is not a ConfigDict
            path = lookup.group(1)
            flag = next((a for a in argv if a.startswith(f"--config.{path}")), "--config")
            parent, _, field = path.rpartition(".")
            _exit(f"{flag}: no config field {field!r} (config.{parent} is a value)", 2)
        named = re.search(r"""Key \\?"(\w+)\\?"|'(\w+)'""", text)
        field = (named.group(1) or named.group(2)) if named else re.findall(r"\w+", text)[0]
        hint = re.search(r'Did you mean \\?"(\w+)\\?"', text)
        overrides = [a for a in argv if a.startswith("--config.") and field in a]
        where = overrides[0] if overrides else "--config"
        message = f"{where}: no config field {field!r}" + (
            f" (did you mean {hint.group(1)!r}?)" if hint else ""
        )
    except (TypeError, ValueError) as e:
        message = f"bad --config or override: {type(e).__name__}: {e}"
    _exit(message, 2)
