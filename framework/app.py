"""The absl entry point shared by the launch commands.

Flags: `--config` (an ml_collections config file, `path.py:arg` for presets, fields
overridable as `--config.FIELD=VALUE`), `--workdir`, and multi-host set-up. On TPU VMs
(and SLURM clusters) `jax.distributed.initialize()` finds its peers by itself; elsewhere
pass `--coordinator_address`, `--num_processes` and `--process_id`.

Bad input (a `ConfigError`: a config file that is missing or raises, an unknown key, a
bad value, an unusable workdir, a stray argument) ends the program with one line on
stderr, `error: ...`, and exit status 2; a run that cannot go on (a `RunError`) with
one line and exit status 1.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import sys
import sysconfig
import tempfile
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before clu imports TensorFlow
from typing import Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from framework.errors import ConfigError, RunError

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
            return load_config_file(argument)
        except ConfigError as e:
            raise _ConfigFileError(str(e)) from None

    def flag_type(self):
        return "config object"


# ml_collections' flag keeps its handling of `--config.FIELD=VALUE` overrides; only the
# loading of the file is ours, for one-line errors that name the file and line.
FLAGS["config"].parser = _ConfigFileParser()


def load_config_file(argument: str) -> ml_collections.ConfigDict:
    """The locked config `get_config(arg)` of `path.py[:arg]` builds.

    Raises ConfigError with one line for a missing file, a file that does not compile or
    raises (naming the file and line), a misspelt key assigned in it, no `get_config`, or
    a `get_config` that returns no ConfigDict.
    """
    path, has_arg, arg = argument.partition(":")
    flag = f"--config={argument}"
    if not path:
        raise ConfigError(f"{flag}: give a config file, e.g. configs/parity/transformer.py:smoke")
    if not os.path.exists(path):
        raise ConfigError(f"{flag}: no such file {path}")
    if os.path.isdir(path):
        raise ConfigError(f"{flag}: {path} is a directory, not a config file")
    module = load_module(path)
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"{flag}: the file defines no get_config(arg) function")
    try:
        config = get_config(arg) if has_arg else get_config()
    except Exception as e:
        raise ConfigError(describe_exception(e, path)) from None
    if config is None:
        raise ConfigError(f"{flag}: get_config() returned None (a missing return?)")
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(
            f"{flag}: get_config() returned a {type(config).__name__}, not a ConfigDict"
        )
    config.lock()
    return config


def load_module(path: str):
    """The config file at `path` as a module (ConfigError naming the line if it raises)."""
    name = "config_file_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    loader = importlib.machinery.SourceFileLoader(name, path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules[name] = module  # as an import would, for dataclasses and pickling in it
    try:
        loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ConfigError(describe_exception(e, path)) from None
    return module


_LIBRARY_DIRS = tuple(
    os.path.realpath(sysconfig.get_paths()[key]) + os.sep
    for key in ("stdlib", "platstdlib", "purelib", "platlib")
)
_FRAMEWORK_DIR = os.path.dirname(os.path.realpath(__file__)) + os.sep


def _is_user_code(filename: str) -> bool:
    """Whether a traceback frame is in a config file or a helper it calls (configs,
    projects), not in the framework or a library: the line the user wrote."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return False
    return not os.path.realpath(filename).startswith(_LIBRARY_DIRS + (_FRAMEWORK_DIR,))


def _shown_path(filename: str) -> str:
    relative = os.path.relpath(os.path.abspath(filename))
    return filename if relative.startswith("..") else relative


def _locked_config_key(e: Exception) -> tuple[str, str] | None:
    """(field, suggestion) when `e` is a locked ConfigDict refusing an unknown key."""
    if not isinstance(e, (AttributeError, KeyError)):
        return None
    text = str(e.args[0]) if e.args else ""
    if isinstance(e, AttributeError) and isinstance(e.args[0] if e.args else None, KeyError):
        text = str(e.args[0].args[0]) if e.args[0].args else ""
    match = re.match(r"""Key "(\w+)" does not exist|'(\w+)'\nDid you mean""", text)
    if not match:
        return None
    hint = re.search(r'Did you mean "(\w+)"', text)
    return match.group(1) or match.group(2), hint.group(1) if hint else ""


def describe_exception(e: BaseException, config_path: str) -> str:
    """One line, `file:line: Type: message`, for an exception raised by a config file.

    The place is the deepest frame in user code (the config file or a helper it calls,
    not a library); a SyntaxError names the line that does not compile. ConfigErrors
    keep their own message without the type; a locked ConfigDict's refusal of an unknown
    key says which key.
    """
    if isinstance(e, SyntaxError) and e.filename:
        where = f"{_shown_path(e.filename)}:{e.lineno}"
        return f"{where}: {type(e).__name__}: {e.msg}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if _is_user_code(f.filename)]
    where = f"{_shown_path(frames[-1].filename)}:{frames[-1].lineno}" if frames else config_path
    key = _locked_config_key(e)
    if key:
        field, hint = key
        return f"{where}: no config field {field!r}" + (
            f" (did you mean {hint!r}?)" if hint else ""
        )
    message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    if isinstance(e, ConfigError):
        return f"{where}: {message}"
    return f"{where}: {type(e).__name__}: {message}" if message else f"{where}: {type(e).__name__}"


# ---------------------------------------------------------------- the workdir


def check_workdir(workdir: str | None) -> None:
    """Raises ConfigError unless `workdir` is a writable directory or can be made one.

    Writes nothing that stays: a missing workdir is not created here (the run creates
    it), only its nearest existing parent is probed with a temporary file. A remote path
    (`gs://bucket/path`) is only checked for a scheme and a bucket that `etils.epath`
    can serve, without touching the network: access errors come from the first write.
    """
    if not workdir:
        raise ConfigError("--workdir is required")
    flag = f"--workdir={workdir}"
    if "://" in workdir:
        _check_remote_workdir(workdir, flag)
        return
    path = os.path.abspath(workdir)
    existing = path
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "a file" if os.path.exists(existing) else "a broken link"
        if existing == path:
            raise ConfigError(f"{flag}: is {what}, not a directory")
        raise ConfigError(f"{flag}: {existing} is {what}, so no directory can be made under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".workdir_probe_", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        where = "" if existing == path else f" ({existing}, the nearest existing directory)"
        raise ConfigError(f"{flag}: cannot write there{where}: {e.strerror}") from None


def _check_remote_workdir(workdir: str, flag: str) -> None:
    """ConfigError for a URL whose scheme epath has no file system for, or with no bucket."""
    from etils import epath

    scheme, _, rest = workdir.partition("://")
    try:
        epath.Path(workdir)  # looks the scheme up in epath's registry; no I/O
    except (KeyError, NotImplementedError, ValueError):
        raise ConfigError(
            f"{flag}: {scheme}:// is not a file system etils.epath serves; use a local "
            "directory or gs://bucket/path"
        ) from None
    if not rest.strip("/"):
        raise ConfigError(f"{flag}: no bucket given; use {scheme}://bucket/path")


# ---------------------------------------------------------------- running


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


def _exit(message: str, status: int) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def run(main: Callable[..., None], positional: bool = False) -> None:
    """Parses flags and runs `main()` (`main(argv)` with `positional`).

    A ConfigError (bad input) becomes one line on stderr and exit status 2, a RunError
    (a run that cannot go on) one line and exit status 1.
    """

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
