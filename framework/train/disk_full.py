"""A full disk (ENOSPC, or a quota) while a run writes: one line naming the path.

The writers (`Checkpointer.save`, `MetricWriter.write`) turn such an error into
`DiskFullError`, a `RunError` (one line, exit status 1), and the trainer names the last
complete checkpoint, from which a rerun resumes once there is space. Orbax writes a
checkpoint in threads that log the failure themselves, a traceback per thread:
`quiet_logs` drops those records, since the one line says it all.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sys
from typing import Any, Iterator

from framework.errors import RunError

_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# TensorStore (Orbax's array writer) reports a failed write as a ValueError whose text
# carries the OS error, e.g. "... No space left on device [os_error_code='28']".
_TEXTS = ("No space left on device", "Disk quota exceeded", "os_error_code='28'")
# Loggers that Orbax's threads and asyncio report the failure through.
_NOISY_LOGGERS = ("absl", "asyncio")


class DiskFullError(RunError):
    """A write failed for lack of space; the message names the path and what to do."""


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or during, outermost first."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it came from, is a write that found no space."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _ERRNOS:
            return True
        if not isinstance(e, DiskFullError) and any(text in str(e) for text in _TEXTS):
            return True
    return False


def earliest(exc: BaseException | None) -> DiskFullError | None:
    """The first `DiskFullError` behind `exc` (cleanup after one may raise another)."""
    found = None
    for e in _chain(exc):
        if isinstance(e, DiskFullError):
            found = e
    return found


def error(what: str) -> DiskFullError:
    """`DiskFullError` for a failed write of `what` (a path, or a path and what it is)."""
    return DiskFullError(f"disk full: no space left writing {what}")


@contextlib.contextmanager
def raising(what: str) -> Iterator[None]:
    """Turns a disk-full error in the block into `error(what)`, from the original."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        if is_disk_full(e):
            raise error(what) from e
        raise


class _DropDiskFull(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_disk_full(record.exc_info[1]):
            return False
        return not any(text in record.getMessage() for text in _TEXTS)


def _is_closed_loop_report(unraisable: Any) -> bool:
    value = unraisable.exc_value
    return isinstance(value, RuntimeError) and "Event loop is closed" in str(value)


def drop_closed_loop_reports() -> None:
    """From now on, drops the 'Event loop is closed' reports (unraisable exceptions) of
    TensorStore callbacks that complete after a failed Orbax save or restore has closed
    its event loop: they come from library threads, late, after the failure has been
    told in one line. Idempotent."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_reports", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_closed_loop_report(unraisable):
            previous(unraisable)

    hook.drops_closed_loop_reports = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


@contextlib.contextmanager
def quiet_logs() -> Iterator[None]:
    """Drops library reports (log records with their tracebacks, unraisable exceptions)
    of a failed write in the block: `DiskFullError` says it in one line.

    If the block ends on a full disk, they are dropped until the (ending) process exits:
    a failed write's pending futures are reported when collected, at exit at the latest.
    """
    drop = _DropDiskFull()
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if not _is_closed_loop_report(unraisable):
            previous(unraisable)

    sys.unraisablehook = hook
    stopping = False
    try:
        yield
    except BaseException as e:
        stopping = is_disk_full(e) or earliest(e) is not None
        raise
    finally:
        if sys.unraisablehook is hook:
            sys.unraisablehook = previous
        if stopping:
            drop_closed_loop_reports()
        else:
            for logger in loggers:
                logger.removeFilter(drop)
