"""Orbax checkpoints of the train state: keep N, resume the latest, refuse a mismatch.

The workdir may be remote (`gs://bucket/path`): Orbax reaches it through `etils.epath`
and writes the arrays with TensorStore's own GCS driver.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

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
        if step is None:
            return
        metadata = self.manager.item_metadata(step)
        tree = getattr(metadata, "tree", metadata)
        problems = _shape_problems(_shapes(tree), _shapes(abstract_state), limit=1)
        if problems:
            raise ConfigError(
                f"{self.directory} holds a checkpoint (step {step}) of an incompatible "
                f"model: {'; '.join(problems)}; {advice}"
            )

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


def _find_checkpoint(path: str) -> tuple[str, int]:
    """(checkpoint directory, step) for `path`: a workdir (its latest checkpoint), its
    `checkpoints` directory (the latest), or one step's directory `.../checkpoints/<step>`."""
    flag = f"config.init_from={path}"
    # Orbax takes absolute local paths only.
    root = epath.Path(path if workdir_lib.is_remote(path) else os.path.abspath(path))
    if not root.exists():
        raise ConfigError(f"{flag}: no such workdir or checkpoint")
    if root.name.isdigit() and (root.parent / root.name).is_dir():
        return str(root.parent), int(root.name)
    directory = root / "checkpoints" if (root / "checkpoints").is_dir() else root
    steps = sorted(
        int(p.name)
        for p in directory.iterdir()
        if p.name.isdigit() and p.is_dir() and ORBAX_TMP_MARK not in p.name
    )
    if not steps:
        raise ConfigError(f"{flag}: holds no checkpoint (no <step> directory in {directory})")
    return str(directory), steps[-1]


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


def load_params(path: str, abstract_params: Any) -> tuple[Any, int]:
    """The parameters of the checkpoint `path` names (see `_find_checkpoint`), laid out
    as `abstract_params` (ShapeDtypeStructs with shardings), and the step they are from.

    Only the parameters are used (a fine-tuning run starts a fresh optimizer and step
    count). Parameters whose presence or shape differ are a ConfigError naming them.
    """
    directory, step = _find_checkpoint(path)
    manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(read_only=True),
        item_handlers=ocp.StandardCheckpointHandler(),
    )
    try:
        metadata = manager.item_metadata(step)
        tree = getattr(metadata, "tree", metadata)
        if not isinstance(tree, dict) or "params" not in tree:
            raise ConfigError(f"config.init_from={path}: step {step} holds no 'params'")
        problems = _shape_problems(_shapes(tree["params"]), _shapes(abstract_params))
        if problems:
            raise ConfigError(
                f"config.init_from={path} (step {step}) does not fit the config's model: "
                + "; ".join(problems)
            )
        sharding = jax.tree.leaves(abstract_params)[0].sharding
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree
        )
        restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    finally:
        manager.close()
    params = jax.tree.map(
        lambda x, a: jax.device_put(x.astype(a.dtype), a.sharding),
        restored["params"],
        abstract_params,
    )
    return params, step
