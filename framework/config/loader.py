"""The one config loader: `path.py[:arg]` -> the locked ConfigDict its `get_config` builds
(or `path.json`: a config written as data, e.g. a table run's).

Every command (`--config=`), table, sweep point and benchmark loads configs here, so a
config file behaves the same everywhere: locked (a misspelt key is an error), and any
error is one line naming the file and the line (`describe_exception`). Overrides
(`--config.KEY=VALUE`, sweep points, tables) are set with `set_field`.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import sys
import sysconfig
import traceback
from typing import Any

import ml_collections

from framework.errors import ConfigError


def load_config(spec: str, **overrides: Any) -> ml_collections.ConfigDict:
    """The locked config of `spec` (`configs/x/y.py[:arg]`), with `overrides` set.

    A relative path that does not exist from the current directory is looked up beside
    the installed `configs` package, so tables and benchmarks that name their configs
    find them from any directory. `overrides` are dotted keys (`dataset.image_size`).
    """
    path, sep, arg = spec.partition(":")
    if not os.path.isabs(path) and not os.path.exists(path):
        installed = os.path.join(_configs_root(), path)
        if os.path.exists(installed):
            spec = installed + sep + arg
    config = load_config_file(spec)
    for key, value in overrides.items():
        set_field(config, key, value)
    return config


def _configs_root() -> str:
    """The directory that holds the `configs` package (the repository, when installed)."""
    import configs

    return os.path.dirname(os.path.dirname(os.path.abspath(configs.__file__)))


def set_field(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """Sets the existing field `key` (`lr.base` or `config.lr.base`) of `config`.

    Raises a one-line ConfigError naming the key for a field that does not exist or a
    value of the wrong type, as a `--config.KEY=VALUE` override would.
    """
    *parents, field = key.removeprefix("config.").split(".")
    node = config
    for i, name in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            where = ".".join(["config", *parents[:i]])
            raise ConfigError(f"no config field {name!r} under {where}")
        node = node[name]
    if not isinstance(node, ml_collections.ConfigDict) or field not in node:
        raise ConfigError(f"no config field {key!r}")
    try:
        node[field] = value
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}={value!r}: {e}") from None


def load_config_file(argument: str) -> ml_collections.ConfigDict:
    """The locked config `get_config(arg)` of `path.py[:arg]` builds.

    Raises ConfigError with one line for a missing file, a file that does not compile or
    raises (naming the file and line), a misspelt key assigned in it, no `get_config`, or
    a `get_config` that returns no ConfigDict.
    """
    path, has_arg, arg = argument.partition(":")
    flag = f"--config={argument}"
    if path.endswith(".json") and not has_arg:
        return _load_json(path, flag)
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


def _load_json(path: str, flag: str) -> ml_collections.ConfigDict:
    """A config written as JSON (a table run's config, a workdir's config.json), locked."""
    from etils import epath  # here: only JSON configs (which may be remote) need it

    try:
        values = json.loads(epath.Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{flag}: no such file {path}") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{flag}: cannot read it as a JSON config: {e}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{flag}: holds a JSON {type(values).__name__}, not a config object")
    config = ml_collections.ConfigDict(values)
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
_FRAMEWORK_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep


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
