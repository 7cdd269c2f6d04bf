"""A workdir belongs to one run: where it is, an exclusive lock, and checking it up front.

`check_workdir` refuses a `--workdir` that cannot be written before anything is built.
`WorkdirLock` keeps a second run off a workdir that is in use: `WORKDIR/.lock` holds
`{"host", "pid", "started"}` of the run holding it and an exclusive `flock` on it.
The kernel drops a `flock` when its holder dies, however it dies (kill -9, a crashed
host), so a lock is never left held by a run that is gone; a record left behind by
such a run is stale, and the next run takes it over with a note. Where the file system
has no `flock` (e.g. Lustre mounted without it, some FUSE mounts), the lock falls back
to creating the file exclusively, and a record left by a run on this host whose pid no
longer runs is stale. Multi-host runs lock once, from process 0 (`on_process_0`). A
remote workdir (`gs://bucket/path`, any path with `://`) is not locked: object stores
have no file locks, so the run only notes that.

`holder(workdir)` tells, without taking the lock, whether a live run holds it and which
(pid and host): how a sweep or table runner recognises a point that a run it no longer
knows about (its runner was killed) is still training.

The config a workdir's run was started with, and what a rerun may change of it, is
`framework.train.run_config`.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import socket
import tempfile
import time
from typing import Any, Callable

from etils import epath

from framework.errors import ConfigError

LOCK_FILE = ".lock"


def _log(message: str) -> None:
    # Imported here: metric_writing imports JAX, which the lock needs only for a note.
    from framework.train import metric_writing

    metric_writing.log(message)


def is_remote(workdir: str) -> bool:
    """True for a workdir on a remote file system (`gs://bucket/path`), served by epath."""
    return "://" in workdir


def make_workdir(workdir: str) -> None:
    """Creates `workdir` and its parents if missing (`os.makedirs` for a local one).

    A remote file system's error (e.g. a `tf.errors.OpError` for a missing bucket, denied
    access, or a scheme TensorFlow has no file system for) is a one-line ConfigError.
    """
    try:
        epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    except Exception as e:  # each remote file system has its own error classes
        if not is_remote(workdir):
            raise
        message = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"cannot create --workdir {workdir}: {message}") from None


def on_process_0(fn: Callable[[], Any]) -> None:
    """Runs `fn` on process 0 only; if it raises there, every process stops.

    The other processes raise a ConfigError pointing at process 0's message instead of
    waiting for it in the first collective.
    """
    import jax  # here: the command lines import this module for its flag, before any JAX

    error: BaseException | None = None
    if jax.process_index() == 0:
        try:
            fn()
        except Exception as e:  # re-raised below, after the others have heard of it
            error = e
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
        if int(failed) and error is None:
            raise ConfigError("process 0 stopped on the workdir; see its error")
    if error is not None:
        raise error


# --------------------------------------------------------------------------------------
# The lock.
# --------------------------------------------------------------------------------------

# flock errors that mean "this file system cannot lock", not "someone holds the lock".
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


def _read_record(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "another run"
    return (
        f"pid {record.get('pid', '?')} on host {record.get('host', '?')} "
        f"since {record.get('started', '?')}"
    )


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True  # another user's process, or a record we cannot read: assume alive
    return True


@dataclasses.dataclass(frozen=True)
class Holder:
    """The run holding a workdir's lock, from its record (`?` where the record lacks it)."""

    pid: str
    host: str
    started: str
    verified: bool  # False: another host's record, trusted without a kernel lock to test

    def describe(self) -> str:
        """'pid 123 on host h', with a note when the lock could not be tested."""
        note = "" if self.verified else "; another host, taken on trust from its lock file"
        return f"pid {self.pid} on host {self.host}{note}"


def _holder(record: dict[str, Any] | None, verified: bool) -> Holder:
    record = record or {}
    return Holder(
        str(record.get("pid", "?")),
        str(record.get("host", "?")),
        str(record.get("started", "?")),
        verified,
    )


def holder(workdir: str) -> Holder | None:
    """The live run holding `workdir`'s lock, or None when no run holds it.

    Tested without taking the lock for more than an instant: a shared `flock` that fails
    means a live run holds it (the kernel drops a dead holder's lock, on any host of a
    file system with working locks). Where the file system has no `flock`, the record
    decides: a run on this host holds it while its pid runs; another host's record is
    taken on trust (`verified` False). A remote workdir has no lock: None.
    """
    if is_remote(workdir):
        return None
    path = os.path.join(workdir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file: nobody holds it
        return None
    import fcntl

    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(_read_record(path), verified=True)
        except OSError as e:
            if e.errno not in _NO_FLOCK:
                raise
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None  # a record left by a run that has ended
    finally:
        os.close(fd)
    record = _read_record(path)
    if record and record.get("host") == socket.gethostname():
        return _holder(record, verified=True) if _pid_alive(record.get("pid")) else None
    return _holder(record, verified=False)


class WorkdirLock:
    """An exclusive lock on a workdir, for one run at a time; `release` on every exit.

    A remote workdir cannot be locked (an object store has no `flock`, nor an exclusive
    create this could rely on): `acquire` creates it and logs a note; nothing is held.
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Takes the lock, or raises a ConfigError naming the run that holds it."""
        if is_remote(self.workdir):
            make_workdir(self.workdir)
            _log(
                f"note: {self.workdir} is not locked (object stores have no file locks); "
                "do not start a second run on it"
            )
            return
        try:
            os.makedirs(self.workdir, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create --workdir {self.workdir}: {e.strerror}") from None
        import fcntl

        for _ in range(20):
            try:
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644), False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError(self._in_use(_read_record(self.path))) from None
            except OSError as e:
                os.close(fd)
                if e.errno not in _NO_FLOCK:
                    raise
                if created:
                    os.unlink(self.path)
                self._acquire_without_flock()
                return
            # The holder unlinks the file when it releases; if it did so between our open
            # and flock, we hold a lock on a file nobody else will open: try again.
            if not self._is_our_file(fd):
                os.close(fd)
                continue
            previous = _read_record(self.path)
            self._fd = fd
            self._write_record()
            if previous:
                _log(
                    f"note: took over the lock of {_describe(previous)}, which ended "
                    "without releasing it"
                )
            return
        raise ConfigError(f"cannot lock {self.workdir}: {self.path} keeps changing")

    def _acquire_without_flock(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_record(self.path)
                here = socket.gethostname()
                if holder and holder.get("host") == here and not _pid_alive(holder.get("pid")):
                    _log(
                        f"note: took over the stale lock of {_describe(holder)}, "
                        "which no longer runs"
                    )
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                hint = (
                    ""
                    if holder and holder.get("host") == here
                    else f" (if it is gone, delete {self.path})"
                )
                raise ConfigError(self._in_use(holder) + hint) from None
            self._fd = fd
            self._write_record()
            return
        raise ConfigError(f"cannot lock {self.workdir}: {self.path} keeps changing")

    def _is_our_file(self, fd: int) -> bool:
        try:
            ours, now = os.fstat(fd), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (ours.st_dev, ours.st_ino) == (now.st_dev, now.st_ino)

    def _write_record(self) -> None:
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        data = (json.dumps(record) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def _in_use(self, holder: dict[str, Any] | None) -> str:
        return (
            f"{self.workdir} is in use by {_describe(holder)}; wait for that run to end "
            "or stop it, or use another --workdir"
        )

    def release(self) -> None:
        """Removes the lock file and drops the lock; nothing if not held."""
        if self._fd is None:
            return
        try:
            if self._is_our_file(self._fd):
                os.unlink(self.path)
        finally:
            os.close(self._fd)  # drops the flock
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------------------
# Checking a --workdir before a run.
# --------------------------------------------------------------------------------------


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
    if is_remote(workdir):
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
