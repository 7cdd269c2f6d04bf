"""Orbax checkpoints of the train state: keep N, resume the latest, refuse a mismatch.

`restore_state` reads a run's state back (evaluation, timing a trained model) and
`load_params` only its parameters (`config.init_from`), through one step lookup.

The workdir may be remote (`gs://bucket/path`): Orbax reaches it through `etils.epath`
and writes the arrays with TensorStore's own GCS driver.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from framework.errors import ConfigError
from framework.train import metric_writing
from framework.train import workdir as workdir_lib

# On a local file system Orbax writes a checkpoint as `<step>.orbax-checkpoint-tmp-<time>`
# and renames it when complete; a run killed mid-write (kill -9) leaves the temporary
# directory behind. On GCS (no renames) it writes `<step>` in place and commits it with a
# `commit_success.txt` file in it; a killed run leaves a `<step>` without one.
ORBAX_TMP_MARK = ".orbax-checkpoint-tmp"
ORBAX_COMMIT_FILE = "commit_success.txt"


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
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def check_compatible(self, abstract_state: Any, advice: str = "use a new --workdir") -> None:
        """One-line error (ending in `advice`) if the latest checkpoint does not fit
        `abstract_state`."""
        step = self.latest_step()
        if step is not None:
            _check_fits(self.manager, self.directory, step, abstract_state, advice)

    def restore(self, step: int, abstract_state: Any) -> Any:
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def save(self, step: int, state: Any, force: bool = False) -> None:
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.StandardSave(state), force=force)

    def reached_preemption(self, step: int) -> bool:
        return self.manager.reached_preemption(step)

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


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


def _find_checkpoint(
    path: str, step: int | None = None, flag: str = "--workdir", step_flag: str = "--checkpoint"
) -> tuple[str, int]:
    """(checkpoint directory, step) for `path`: a workdir or its `checkpoints` directory
    (their latest checkpoint, or `step`), or one step's directory `.../checkpoints/<step>`.

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
        return str(root.parent), int(root.name)
    else:
        directory = root
    steps = _complete_steps(directory)
    if not steps:
        raise ConfigError(f"{named}: holds no checkpoint (no <step> directory in {directory})")
    if step is None:
        return str(directory), steps[-1]
    if step not in steps:
        raise ConfigError(f"{step_flag}={step}: {directory} holds steps {steps}")
    return str(directory), step


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
    """The metadata tree (shapes and dtypes) of checkpoint `step`."""
    metadata = manager.item_metadata(step)
    return getattr(metadata, "tree", metadata)


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
    """(the train state of `workdir`'s checkpoint `step` (default: the latest), its step).

    `workdir` may also name its `checkpoints` directory or one step's directory. The
    state is laid out as `abstract_state` (ShapeDtypeStructs with shardings, e.g.
    `Experiment.abstract_state`). A missing workdir or step, or a checkpoint of another
    model (ending in `advice`), is a one-line ConfigError naming `flag` / `step_flag`.
    """
    directory, step = _find_checkpoint(workdir, step, flag, step_flag)
    with _reader(directory) as manager:
        _check_fits(manager, directory, step, abstract_state, advice)
        state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    return state, step


def load_params(path: str, abstract_params: Any) -> tuple[Any, int]:
    """The parameters of the checkpoint `path` names (see `_find_checkpoint`), laid out
    as `abstract_params` (ShapeDtypeStructs with shardings), and the step they are from.

    Only the parameters are used (a fine-tuning run starts a fresh optimizer and step
    count). Parameters whose presence or shape differ are a ConfigError naming them.
    """
    flag = "config.init_from"
    directory, step = _find_checkpoint(path, flag=flag)
    with _reader(directory) as manager:
        tree = _saved_tree(manager, step)
        if not isinstance(tree, dict) or "params" not in tree:
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
        restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    params = jax.tree.map(
        lambda x, a: x if x.dtype == a.dtype else x.astype(a.dtype),
        restored["params"],
        abstract_params,
    )
    return params, step
