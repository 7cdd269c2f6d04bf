"""Test-only: a remote workdir without a network, on TensorFlow's in-memory `ram://`.

Production workdirs on Google Cloud Storage (`gs://bucket/path`) are written by two
clients of one bucket:

* everything but checkpoint arrays (config.json, metrics.jsonl, TensorBoard events, table
  results, Orbax's directories and metadata) through `etils.epath`, which with TensorFlow
  installed serves `gs://` by `tf.io.gfile` (epath's `tf_backend`);
* checkpoint arrays through TensorStore, which Orbax points at its native `gcs` kvstore
  driver for `gs://` paths (`tensorstore_utils._use_gcs_driver`), not through epath.

`ram_filesystem()` gives `ram://` the same two clients of one store, minus the network:

* epath: `ram://` is registered as `gpath.py` registers `gs://` (`_URI_PREFIXES`,
  `_URI_SCHEMES`, `_URI_MAP_ROOT`, `_PREFIX_TO_BACKEND`, `register._URI_PREFIXES_TO_CLS`),
  served by epath's `tf_backend`: `tf.io.gfile` keeps `ram://` files in memory.
* Orbax: `ram://` counts as a GCS path (`gcs_utils._GCS_PATH_PREFIX`), so Orbax takes its
  `gs://` code path: a step is written in place and committed by `commit_success.txt`
  rather than by renaming a temporary directory, and deletes go through `gcs_utils.rmtree`.
* TensorStore: where Orbax opens the `gcs` driver for `gs://bucket/key`
  (`gcs_utils.get_kvstore_for_gcs`), a `ram://bucket/key` path opens TensorStore's
  `memory` kvstore at `bucket/key`. A memory kvstore lives in a `ts.Context`, and Orbax
  makes a context per save or restore (`tensorstore_utils.get_ts_context`): they become
  children of one context held while the block runs, so all of them see one store.

Two quirks of `ram://` that GCS does not have are corrected by `_RamBackend`, the
`tf_backend` used for `ram://`: (1) TF's RAM file system appends when an existing file is
opened with "w" (GCS replaces the object), so "w" removes the file first; (2) on GCS,
gfile sees the objects TensorStore writes (Orbax lists and checks them through epath,
e.g. the `ocdbt.process_*` directories it merges and `manifest.ocdbt`), so existence,
listing, glob, stat, reads and deletes also consult the TensorStore memory store.

Not covered: TensorStore's `gcs` driver itself and the TF GCS client (HTTP, auth,
retries, GCS listing consistency). Everything patched is restored on exit.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import uuid
from typing import Any, Callable, Iterator

import pytest
import tensorstore as ts
from etils.epath import backend as backend_lib
from etils.epath import gpath, register, stat_utils
from orbax.checkpoint._src.path import gcs_utils
from orbax.checkpoint._src.serialization import tensorstore_utils as ts_utils

SCHEME = "ram"
PREFIX = f"{SCHEME}://"


def _is_ram(path: Any) -> bool:
    # Orbax normalises `ram://a/b` to `ram:/a/b` (os.path.normpath) before some calls.
    return str(path).startswith(f"{SCHEME}:/")


def _key(path: Any) -> str:
    """`ram://bucket/a/b` (or `ram:/bucket/a/b`) -> `bucket/a/b`: its memory kvstore key."""
    return str(path).split(":", 1)[1].lstrip("/").rstrip("/")


class _RamBackend(backend_lib._TfBackend):
    """epath's `tf_backend` for `ram://`, with GCS's overwrite and one-bucket semantics."""

    def __init__(self, context: ts.Context):
        self._kv = ts.KvStore.open({"driver": "memory"}, context=context).result()

    # The TensorStore side of the bucket.

    def _value(self, path: Any) -> bytes | None:
        result = self._kv.read(_key(path)).result()
        return result.value if result.state == "value" else None

    def _keys_under(self, path: Any) -> list[str]:
        prefix = _key(path) + "/"
        found = self._kv.list(ts.KvStore.KeyRange(prefix, prefix[:-1] + "0")).result()
        return [key.decode() for key in found]

    def _children(self, path: Any) -> set[str]:
        start = len(_key(path)) + 1
        return {key[start:].split("/", 1)[0] for key in self._keys_under(path)}

    def _delete_under(self, path: Any) -> bool:
        prefix = _key(path) + "/"
        had = bool(self._keys_under(path)) or self._value(path) is not None
        self._kv.delete_range(ts.KvStore.KeyRange(prefix, prefix[:-1] + "0")).result()
        self._kv.delete_range(ts.KvStore.KeyRange(_key(path), _key(path) + "\0")).result()
        return had

    # The Backend interface.

    @contextlib.contextmanager
    def open(self, path: Any, mode: str) -> Iterator[Any]:
        if "r" in mode and not self.gfile.exists(path):
            value = self._value(path)
            if value is not None:
                yield io.BytesIO(value) if "b" in mode else io.StringIO(value.decode())
                return
        if "w" in mode and self.gfile.exists(path) and not self.gfile.isdir(path):
            self.gfile.remove(path)  # TF's RAM file system would append otherwise
        with super().open(path, mode) as f:
            yield f

    def exists(self, path: Any) -> bool:
        return (
            self.gfile.exists(path) or self._value(path) is not None or bool(self._keys_under(path))
        )

    def isdir(self, path: Any) -> bool:
        return self.gfile.isdir(path) or bool(self._keys_under(path))

    def listdir(self, path: Any) -> list[str]:
        children = self._children(path)
        if self.gfile.isdir(path) or not children:
            children |= {name.rstrip("/") for name in self.gfile.listdir(path)}
        return sorted(children)

    def glob(self, path: Any) -> list[str]:
        found = set(self.gfile.glob(path))
        pattern = str(path)[len(PREFIX) :].split("/")
        fixed = []
        for part in pattern:
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        if len(fixed) < len(pattern):
            for key in self._keys_under(PREFIX + "/".join(fixed)):
                parts = key.split("/")[: len(pattern)]
                if len(parts) == len(pattern) and all(
                    fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pattern)
                ):
                    found.add(PREFIX + "/".join(parts))
        return sorted(found)

    def walk(
        self,
        top: Any,
        *,
        top_down: bool = True,
        on_error: Callable[[OSError], object] | None = None,
    ) -> Iterator[tuple[Any, list[str], list[str]]]:
        top = str(top).rstrip("/")
        names = self.listdir(top)
        dirs = [n for n in names if self.isdir(f"{top}/{n}")]
        files = [n for n in names if n not in dirs]
        if top_down:
            yield top, dirs, files
        for name in dirs:
            yield from self.walk(f"{top}/{name}", top_down=top_down, on_error=on_error)
        if not top_down:
            yield top, dirs, files

    def rmtree(self, path: Any) -> None:
        in_gfile = self.gfile.exists(path)
        if in_gfile:
            super().rmtree(path)
        if not self._delete_under(path) and not in_gfile:
            raise FileNotFoundError(f"{path} does not exist")

    def remove(self, path: Any) -> None:
        if not self.gfile.exists(path) and self._value(path) is not None:
            self._delete_under(path)
            return
        super().remove(path)

    def stat(self, path: Any) -> stat_utils.StatResult:
        if self.gfile.exists(path):
            return super().stat(path)
        value = self._value(path)
        if value is None and not self._keys_under(path):
            raise FileNotFoundError(f"{path} does not exist")
        return stat_utils.StatResult(
            is_directory=value is None,
            length=0 if value is None else len(value),
            mtime=0,
            owner=None,
            group=None,
            mode=None,
        )


@contextlib.contextmanager
def ram_filesystem() -> Iterator[None]:
    """Serves `ram://` as production serves `gs://` (epath, Orbax, TensorStore) meanwhile."""
    shared_context = ts.Context()  # the memory kvstore that every save and restore sees
    backend = _RamBackend(shared_context)
    use_gcs_driver = ts_utils._use_gcs_driver
    kvstore_for_gcs = gcs_utils.get_kvstore_for_gcs
    get_ts_context = ts_utils.get_ts_context

    def _use_gcs_driver(directory: str) -> bool:
        return _is_ram(directory) or use_gcs_driver(directory)

    def get_kvstore_for_gcs(path: str) -> dict[str, Any]:
        if _is_ram(path):
            return {"driver": "memory", "path": _key(path)}
        return kvstore_for_gcs(path)

    def _get_ts_context(*args: Any, **kwargs: Any) -> ts.Context:
        return ts.Context(get_ts_context(*args, **kwargs).spec, shared_context)

    # `_GPath._backend` returns `tf_backend` for every scheme once TensorFlow is installed,
    # whatever `_PREFIX_TO_BACKEND` says: ram:// paths get the corrected one here.
    gpath_backend = gpath._GPath._backend

    def _backend(path: gpath._GPath) -> backend_lib.Backend:
        return backend if path._uri_scheme == SCHEME else gpath_backend.fget(path)

    with pytest.MonkeyPatch.context() as patch:
        # epath: the registration `gpath.py` makes for gs://, on tf_backend (see above).
        patch.setattr(gpath, "_URI_PREFIXES", gpath._URI_PREFIXES + (PREFIX,))
        patch.setattr(gpath, "_URI_SCHEMES", gpath._URI_SCHEMES | {SCHEME})
        patch.setattr(gpath, "_GCS_BACKENDS", gpath._GCS_BACKENDS | {backend})
        patch.setitem(gpath._URI_MAP_ROOT, PREFIX, f"/{SCHEME}/")
        patch.setitem(gpath._PREFIX_TO_BACKEND, SCHEME, backend)
        patch.setitem(register._URI_PREFIXES_TO_CLS, PREFIX, gpath.PosixGPath)
        patch.setattr(gpath._GPath, "_backend", property(_backend))
        # Orbax: ram:// takes the gs:// code path; TensorStore: memory instead of gcs.
        patch.setattr(gcs_utils, "_GCS_PATH_PREFIX", gcs_utils._GCS_PATH_PREFIX + (PREFIX,))
        patch.setattr(gcs_utils, "get_kvstore_for_gcs", get_kvstore_for_gcs)
        patch.setattr(ts_utils, "_use_gcs_driver", _use_gcs_driver)
        patch.setattr(ts_utils, "get_ts_context", _get_ts_context)
        yield


@contextlib.contextmanager
def ram_workdir() -> Iterator[str]:
    """A fresh `ram://` workdir, served while the block runs and deleted after it.

    A test module makes it a fixture with
    `@pytest.fixture` / `def workdir():` / `with remote_fs.ram_workdir() as path: yield path`.
    """
    import tensorflow as tf

    bucket = f"{PREFIX}test-{uuid.uuid4().hex[:8]}"
    with ram_filesystem():
        try:
            yield f"{bucket}/workdir"
        finally:
            if tf.io.gfile.exists(bucket):
                tf.io.gfile.rmtree(bucket)
