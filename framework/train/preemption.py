"""SIGTERM (a TPU VM's preemption notice, a scheduler's stop) as a flag the loop reads.

The trainer installs `SigtermFlag` for the whole run and checks `received` after each
step: it then writes a checkpoint and exits cleanly, so that a rerun resumes there.
"""

from __future__ import annotations

import signal
import threading

from framework.train import metric_writing


class SigtermFlag:
    """Records SIGTERM (TPU preemption) so the loop can checkpoint and exit cleanly.

    Installed for the whole run, until the last checkpoint is written and the workdir
    released, so that a SIGTERM during the final (asynchronous) save only waits for it.
    Only the main thread can install a handler; elsewhere the flag never turns on.
    """

    def __init__(self):
        self.received = False
        self.finishing = False  # set once the loop has ended and the last save is closing
        self._previous = None

    def __enter__(self) -> "SigtermFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received:  # the same stop again, e.g. sent to a supervised process and to
            return  # its supervisor, which passes it on (framework.launchers.multihost)
        if self.finishing:
            metric_writing.log("SIGTERM received: finishing the last checkpoint, then exiting")
        else:
            metric_writing.log("SIGTERM received: saving a checkpoint and exiting")
        self.received = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
