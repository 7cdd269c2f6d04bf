"""Orbax checkpoints of the train state: keep N, resume the latest, refuse a mismatch.

`restore_state` reads a run's state back (evaluation, timing a trained model) and
`load_params` only its parameters (`config.init_from`), through one step lookup.

A step that cannot be restored (truncated or missing array files, missing or garbled
metadata, a directory another tool half-copied) is not the end of a run: the trainer
(`Checkpointer.restore_newest`) logs one line naming it and the problem, moves it aside
to `checkpoints/<step>.corrupt-<UTC time>` (never deleting it; Orbax does not take that
name for a step) and resumes from the newest step that restores. The readers
(`restore_state`, `load_params`) move nothing: asked for the latest step, they name each
unreadable one in a note and use the newest that restores; asked for a step that cannot
be restored, they stop with one line naming it and the other steps. With no step left
that restores, each stops with one line and changes nothing. A checkpoint of another
model (parameters of other shapes) is never "unreadable": it is the one-line
incompatible-model error, as before. A read that fails for the storage's sake
(permission, unavailable, timeout) stops with one line and moves nothing either.

The workdir may be remote (`gs://bucket/path`): Orbax reaches it through `etils.epath`
and writes the arrays with TensorStore's own GCS driver.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import shutil
import sys
import time
from typing import Any, Callable, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from framework.errors import ConfigError, RunError
from framework.train import disk_full, metric_writing
from framework.train import workdir as workdir_lib

# On a local file system Orbax writes a checkpoint as `<step>.orbax-checkpoint-tmp-<time>`
# and renames it when complete; a run killed mid-write (kill -9) leaves the temporary
# directory behind. On GCS (no renames) it writes `<step>` in place and commits it with a
# `commit_success.txt` file in it; a killed run leaves a `<step>` without one.
ORBAX_TMP_MARK = ".orbax-checkpoint-tmp"
ORBAX_COMMIT_FILE = "commit_success.txt"
# An unreadable step is renamed `<step>.corrupt-<UTC time>`: kept for a post-mortem, and
# no longer a step name to Orbax (which takes only `<step>`) or to `_complete_steps`.
CORRUPT_MARK = ".corrupt-"
# The directory inside a step that holds the train state (Orbax's single item).
_ITEM = "default"


def checkpoint_directory(workdir: str) -> str:
    """`<workdir>/checkpoints`, absolute for a local workdir (Orbax requires it)."""
    if workdir_lib.is_remote(workdir):
        return str(epath.Path(workdir) / "checkpoints")
    return os.path.abspath(os.path.join(workdir, "checkpoints"))


def _incomplete_remote(directory: epath.Path, names: list[str]) -> list[str]:
    """The `<step>` directories that Orbax did not commit (see `ORBAX_COMMIT_FILE`)."""
    return [
        name
        for name in names
        if name.isdigit() and not (directory / name / ORBAX_COMMIT_FILE).exists()
    ]


def remove_temporaries(workdir: str) -> list[str]:
    """Deletes incomplete checkpoints left by a killed run (process 0, before the manager)."""
    if workdir_lib.is_remote(workdir):
        directory = epath.Path(checkpoint_directory(workdir))
        if not directory.is_dir():
            return []
        names = [path.name for path in directory.iterdir()]
        removed = sorted(
            [name for name in names if ORBAX_TMP_MARK in name]
            + _incomplete_remote(directory, names)
        )
        for name in removed:
            path = directory / name
            if path.is_dir():
                path.rmtree(missing_ok=True)
            else:
                path.unlink(missing_ok=True)
    else:
        directory = checkpoint_directory(workdir)
        if not os.path.isdir(directory):
            return []
        removed = sorted(name for name in os.listdir(directory) if ORBAX_TMP_MARK in name)
        for name in removed:
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
    if removed:
        metric_writing.log(
            f"note: removed {len(removed)} incomplete checkpoint(s) left by an interrupted "
            f"run: {', '.join(removed)}"
        )
    return removed


def _shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in flat:
        key = "/".join(
            str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path
        )
        out[key] = (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
    return out


class Checkpointer:
    """Saves and restores `TrainState` pytrees under `<workdir>/checkpoints`."""

    def __init__(self, workdir: str, keep: int, asynchronous: bool = True):
        self.directory = checkpoint_directory(workdir)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=asynchronous
        )
        with _quiet_reads():  # Orbax warns of each step without its own metadata file
            self.manager = ocp.CheckpointManager(
                self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
            )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore_newest(
        self, abstract_state: Any, advice: str = "use a new --workdir"
    ) -> tuple[Any | None, int]:
        """(the state of the newest step that restores, its step), or (None, 0) without
        checkpoints.

        Newer steps that cannot be restored are moved aside (process 0), each with one
        line naming it and why. A checkpoint of another model is a one-line ConfigError
        ending in `advice`; so is a directory none of whose steps restores (nothing is
        moved then).
        """

        def read(step: int) -> Any:
            _check_fits(self.manager, self.directory, step, abstract_state, advice)
            return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

        steps = self.manager.all_steps()
        state, step, unreadable = _newest_readable(self.directory, steps, read)
        if step is None:
            if unreadable:
                raise ConfigError(_none_restores(self.directory, unreadable))
            return None, 0
        if unreadable:
            # (on_process_0 returns on every process once process 0 is done)
            workdir_lib.on_process_0(lambda: _set_aside(self.directory, unreadable))
            self.manager.reload()
        return state, step

    def restore(self, step: int, abstract_state: Any) -> Any:
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def save(self, step: int, state: Any, force: bool = False) -> None:
        """Saves `state` as `step` (asynchronously, if so made); a full disk, here or in
        the previous asynchronous save, is a `DiskFullError` naming the directory."""
        if step in self.manager.all_steps():
            return
        with disk_full.raising(f"a checkpoint in {self.directory}"):
            self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def reached_preemption(self, step: int) -> bool:
        return self.manager.reached_preemption(step)

    def close(self) -> None:
        """Waits for the last save (a full disk: `DiskFullError`) and closes the manager."""
        try:
            with disk_full.raising(f"a checkpoint in {self.directory}"):
                self.manager.wait_until_finished()
        except BaseException:
            with contextlib.suppress(Exception):  # the error above says what went wrong
                self.manager.close()
            raise
        self.manager.close()


def complete_steps(workdir: str) -> list[int]:
    """The steps of `workdir`'s complete checkpoints, ascending (none: an empty list)."""
    directory = epath.Path(checkpoint_directory(workdir))
    return _complete_steps(directory) if directory.is_dir() else []


def _complete_steps(directory: epath.Path) -> list[int]:
    """The steps of the complete checkpoints in `directory`, ascending."""
    names = [path.name for path in directory.iterdir()]
    remote = workdir_lib.is_remote(str(directory))
    incomplete = set(_incomplete_remote(directory, names)) if remote else set()
    return sorted(
        int(name)
        for name in names
        if name.isdigit() and name not in incomplete and (directory / name).is_dir()
    )


# ---------------------------------------------------------------- unreadable steps


class _Unreadable(Exception):
    """A step that cannot be restored from its files; the message says why."""


# TensorStore's status codes for reads that fail for the storage's sake rather than the
# files': retrying later (or with access) may succeed, so the step is not set aside.
_STORAGE_CODES = (
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "RESOURCE_EXHAUSTED",
    "CANCELLED",
    "ABORTED",
)
_STATUS = re.compile(r"^([A-Z][A-Z_]{3,}): ")
_OK, _BAD, _STORAGE = 0, 1, 2  # outcomes of a read, worst last


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    text = text.split(" [tensorstore_spec=")[0].split(" See full TensorStore details")[0]
    text = re.sub(r' in OCDBT database at (local file )?"[^"]*"', "", text)  # the step's own
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: BaseException) -> str:
    """Why a read failed, in a few words: TensorStore's status line where there is one
    (`OUT_OF_RANGE: Error reading ...`), else the innermost error's first line."""
    chain = list(disk_full._chain(exc))
    for e in reversed(chain):  # innermost first
        if _STATUS.match(str(e)):
            return _shorten(str(e))
    for e in chain:
        if isinstance(e, _Unreadable):
            return _shorten(str(e))
    inner = chain[-1]
    first = (str(inner).strip().splitlines() or [""])[0]
    return _shorten(f"{type(inner).__name__}: {first}" if first else type(inner).__name__)


def _is_storage_failure(exc: BaseException) -> bool:
    for e in disk_full._chain(exc):
        match = _STATUS.match(str(e))
        if (match and match.group(1) in _STORAGE_CODES) or isinstance(
            e, (PermissionError, TimeoutError, ConnectionError)
        ):
            return True
    return False


def _from_orbax(record_path: str) -> bool:
    return f"{os.sep}orbax{os.sep}" in record_path


class _DropReadNoise(logging.Filter):
    """Orbax's warnings and asyncio's 'exception was never retrieved' reports while
    steps are tried: the one line per unreadable step says what matters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio":
            return "never retrieved" not in record.getMessage()
        return not (_from_orbax(record.pathname) and record.levelno < logging.CRITICAL)


def _is_read_noise(unraisable: Any) -> bool:
    """A failed read's abandoned coroutines, closed when collected, raise again."""
    tb = unraisable.exc_traceback
    while tb is not None:
        if _from_orbax(tb.tb_frame.f_code.co_filename):
            return True
        tb = tb.tb_next
    return "Event loop is closed" in str(unraisable.exc_value)


@contextlib.contextmanager
def _quiet_reads() -> Iterator[None]:
    drop = _DropReadNoise()
    loggers = [logging.getLogger("absl"), logging.getLogger("asyncio")]
    for logger in loggers:
        logger.addFilter(drop)
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _is_read_noise(unraisable):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)
        if sys.unraisablehook is hook:
            sys.unraisablehook = previous


def _attempt(read: Callable[[int], Any], step: int) -> tuple[int, str, Any]:
    """(outcome, problem, result) of `read(step)`; a ConfigError (another model) and
    MemoryError pass through."""
    try:
        return _OK, "", read(step)
    except (ConfigError, MemoryError):
        raise
    except Exception as e:  # what failed is in the files, or the storage
        return (_STORAGE if _is_storage_failure(e) else _BAD), _describe(e), None


def _agreed(outcome: int, problem: str) -> tuple[int, str]:
    """The worst outcome over the processes (the files may fail some of them only)."""
    if jax.process_count() == 1:
        return outcome, problem
    from jax.experimental import multihost_utils

    worst = int(np.max(multihost_utils.process_allgather(np.int32(outcome))))
    if worst != outcome:
        problem = "it cannot be read on another process"
    return worst, problem


def _newest_readable(
    directory: str, steps: list[int], read: Callable[[int], Any]
) -> tuple[Any, int | None, list[tuple[int, str]]]:
    """(read(step), step) for the newest of `steps` that reads, and the newer steps that
    do not, with why: [(step, problem)], newest first. (None, None, ...) if none reads.

    A failure of the storage rather than the files stops with a one-line RunError.
    """
    unreadable: list[tuple[int, str]] = []
    with _quiet_reads():
        try:
            for step in sorted(steps, reverse=True):
                outcome, problem, result = _attempt(read, step)
                outcome, problem = _agreed(outcome, problem)
                if outcome == _OK:
                    return result, step, unreadable
                if outcome == _STORAGE:
                    raise RunError(
                        f"checkpoint step {step} in {directory} cannot be read now "
                        f"({problem}); nothing was changed: check the storage (access, "
                        "availability) and rerun"
                    )
                unreadable.append((step, problem))
            return None, None, unreadable
        finally:
            if unreadable:
                # asyncio reports a failed read's abandoned tasks when they are collected:
                # here, while quiet. TensorStore's late callbacks find the read's event
                # loop closed: not worth a traceback either.
                gc.collect()
                disk_full.drop_closed_loop_reports()


def _none_restores(directory: str, unreadable: list[tuple[int, str]], named: str = "") -> str:
    problems = "; ".join(f"step {step}: {problem}" for step, problem in unreadable)
    where = f"{named}: " if named else ""
    return (
        f"{where}no checkpoint in {directory} restores ({problems}); nothing was changed: "
        "put back intact copies of these steps, or move the directory away to start afresh"
    )


def _set_aside(directory: str, unreadable: list[tuple[int, str]]) -> None:
    """Renames each unreadable step to `<step>.corrupt-<UTC time>`, one line each."""
    root = epath.Path(directory)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for step, problem in unreadable:
        target = root / f"{step}{CORRUPT_MARK}{stamp}"
        n = 1
        while target.exists():
            n += 1
            target = root / f"{step}{CORRUPT_MARK}{stamp}-{n}"
        (root / str(step)).rename(target)
        metric_writing.log(
            f"checkpoint step {step} cannot be restored ({problem}); moved it aside to {target}"
        )


def _unreadable_notes(directory: str, unreadable: list[tuple[int, str]], used: int) -> None:
    for step, problem in unreadable:
        metric_writing.log(
            f"note: checkpoint step {step} in {directory} cannot be restored ({problem}); "
            f"using step {used}, the newest that restores"
        )


# ---------------------------------------------------------------- reading a run's checkpoint


def _find_checkpoint(
    path: str, step: int | None = None, flag: str = "--workdir", step_flag: str = "--checkpoint"
) -> tuple[str, list[int], bool]:
    """(checkpoint directory, its complete steps, whether a step was named) for `path`: a
    workdir or its `checkpoints` directory (all its steps, or `step`), or one step's
    directory `.../checkpoints/<step>`.

    Errors are one line naming `flag=path` (or `step_flag=step` for a missing step).
    """
    named = f"{flag}={path}"
    # Orbax takes absolute local paths only.
    root = epath.Path(path if workdir_lib.is_remote(path) else os.path.abspath(path))
    if not root.exists():
        raise ConfigError(f"{named}: no such workdir or checkpoint")
    if (root / "checkpoints").is_dir():
        directory = root / "checkpoints"
    elif root.name.isdigit() and root.is_dir() and step in (None, int(root.name)):
        return str(root.parent), [int(root.name)], True
    else:
        directory = root
    steps = _complete_steps(directory)
    if not steps:
        raise ConfigError(f"{named}: holds no checkpoint (no <step> directory in {directory})")
    if step is None:
        return str(directory), steps, False
    if step not in steps:
        raise ConfigError(f"{step_flag}={step}: {directory} holds steps {steps}")
    return str(directory), [step], True


def _read_newest(
    path: str,
    read: Callable[[ocp.CheckpointManager, int], Any],
    step: int | None = None,
    flag: str = "--workdir",
    step_flag: str = "--checkpoint",
) -> tuple[Any, int]:
    """`read(manager, step)` of the checkpoint `path` names (see `_find_checkpoint`): of
    the newest step that restores, with a note for each newer one, if no step is named.

    Moves nothing. A named step that cannot be restored, or no step that restores, is a
    one-line ConfigError.
    """
    directory, steps, named_step = _find_checkpoint(path, step, flag, step_flag)
    with _reader(directory) as manager:
        result, found, unreadable = _newest_readable(directory, steps, lambda s: read(manager, s))
    if found is None and named_step:
        ((bad, problem),) = unreadable
        others = [s for s in _complete_steps(epath.Path(directory)) if s != bad]
        choose = (
            f"choose another with {step_flag}=STEP"
            if step_flag
            else "name another step's directory"
        )
        named = f"{step_flag}={step}" if step is not None else f"{flag}={path}"
        raise ConfigError(
            f"{named}: checkpoint step {bad} in {directory} cannot be restored "
            f"({problem}); its other steps: {others or 'none'} ({choose})"
        )
    if found is None:
        raise ConfigError(_none_restores(directory, unreadable, f"{flag}={path}"))
    _unreadable_notes(directory, unreadable, found)
    return result, found


def _shape_problems(saved: dict, expected: dict, limit: int = 3) -> list[str]:
    """What differs between two `_shapes` trees (a checkpoint's, the config's): the first
    `limit` parameters missing, extra or of another shape, then how many more."""
    problems = [f"{k!r} is not in the checkpoint" for k in sorted(set(expected) - set(saved))]
    problems += [f"{k!r} is not in the config's model" for k in sorted(set(saved) - set(expected))]
    problems += [
        f"{k!r} has shape {saved[k][0]} there, {shape} in the config"
        for k, (shape, _) in expected.items()
        if k in saved and saved[k][0] != shape
    ]
    more = len(problems) - limit
    return problems[:limit] + ([f"and {more} more"] if more > 0 else [])


def _saved_tree(manager: ocp.CheckpointManager, step: int) -> Any:
    """The metadata tree (shapes and dtypes) of checkpoint `step`; `_Unreadable` if the
    step holds no saved state or its metadata is missing or garbled."""
    if not (epath.Path(manager.directory) / str(step) / _ITEM).is_dir():
        raise _Unreadable("it holds no saved state (an incomplete copy?)")
    try:
        metadata = manager.item_metadata(step)
    except (ValueError, OSError) as e:
        raise _Unreadable(f"its metadata is unreadable: {_describe(e)}") from e
    tree = getattr(metadata, "tree", metadata)
    if not isinstance(tree, dict) or not tree:
        raise _Unreadable("its metadata is missing")
    return tree


def _check_fits(
    manager: ocp.CheckpointManager, directory: str, step: int, abstract_state: Any, advice: str
) -> None:
    """One-line ConfigError, ending in `advice`, if checkpoint `step` does not fit
    `abstract_state`."""
    saved = _shapes(_saved_tree(manager, step))
    problems = _shape_problems(saved, _shapes(abstract_state), limit=1)
    if problems:
        raise ConfigError(
            f"{directory} holds a checkpoint (step {step}) of an incompatible "
            f"model: {'; '.join(problems)}; {advice}"
        )


@contextlib.contextmanager
def _reader(directory: str) -> Iterator[ocp.CheckpointManager]:
    """A read-only manager of the checkpoint directory `directory`."""
    with _quiet_reads():
        manager = ocp.CheckpointManager(
            directory,
            options=ocp.CheckpointManagerOptions(read_only=True),
            item_handlers=ocp.StandardCheckpointHandler(),
        )
    try:
        yield manager
    finally:
        manager.close()


def restore_state(
    workdir: str,
    abstract_state: Any,
    step: int | None = None,
    *,
    advice: str = "restore it with the config it was trained with",
    flag: str = "--workdir",
    step_flag: str = "--checkpoint",
) -> tuple[Any, int]:
    """(the train state of `workdir`'s checkpoint `step` (default: the newest that
    restores), its step).

    `workdir` may also name its `checkpoints` directory or one step's directory. The
    state is laid out as `abstract_state` (ShapeDtypeStructs with shardings, e.g.
    `Experiment.abstract_state`). A missing workdir or step, a step that cannot be
    restored, or a checkpoint of another model (ending in `advice`), is a one-line
    ConfigError naming `flag` / `step_flag`.
    """

    def read(manager: ocp.CheckpointManager, step: int) -> Any:
        _check_fits(manager, str(manager.directory), step, abstract_state, advice)
        return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    return _read_newest(workdir, read, step, flag, step_flag)


def load_params(path: str, abstract_params: Any) -> tuple[Any, int]:
    """The parameters of the checkpoint `path` names (see `_find_checkpoint`; of a
    workdir, its newest step that restores), laid out as `abstract_params`
    (ShapeDtypeStructs with shardings), and the step they are from.

    Only the parameters are used (a fine-tuning run starts a fresh optimizer and step
    count). Parameters whose presence or shape differ are a ConfigError naming them.
    """
    flag = "config.init_from"

    def read(manager: ocp.CheckpointManager, step: int) -> Any:
        tree = _saved_tree(manager, step)
        if "params" not in tree:
            raise ConfigError(f"{flag}={path}: step {step} holds no 'params'")
        problems = _shape_problems(_shapes(tree["params"]), _shapes(abstract_params))
        if problems:
            raise ConfigError(
                f"{flag}={path} (step {step}) does not fit the config's model: "
                + "; ".join(problems)
            )
        # The parameters are read straight into their own shardings; the rest of the
        # saved state (read, then dropped) replicated.
        replicated = jax.sharding.NamedSharding(
            jax.tree.leaves(abstract_params)[0].sharding.mesh, jax.sharding.PartitionSpec()
        )
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=replicated), tree
        )
        target["params"] = jax.tree.map(
            lambda m, a: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=a.sharding),
            tree["params"],
            abstract_params,
        )
        return manager.restore(step, args=ocp.args.StandardRestore(target))["params"]

    restored, step = _read_newest(path, read, flag=flag, step_flag="")
    params = jax.tree.map(
        lambda x, a: x if x.dtype == a.dtype else x.astype(a.dtype), restored, abstract_params
    )
    return params, step
