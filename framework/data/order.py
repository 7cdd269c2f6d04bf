"""`EpochOrder`: the seeded record order of an endless stream of epochs.

A builder with random access to `n` records reads them epoch after epoch, each epoch
in its own permutation drawn from `np.random.default_rng([seed, *stream, epoch])`, so
the record at any position of the stream is a function of (seed, position) alone: a
resumed run, another process count or another number of reader threads sees the same
records. Every builder (text chunks, text tasks, tfds images) takes its order from
here, with one cache rule: the orders of the `KEEP` most recently drawn epochs are
kept (a batch may straddle two epochs; an earlier epoch is drawn again if asked).

It is a module of its own, beside `pipeline` (which re-exports it), because it is
plain numpy: grain worker processes unpickle it without the pipeline's jax side.
"""

from __future__ import annotations

import threading

import numpy as np

KEEP = 2  # epochs whose permutations are cached


class EpochOrder:
    """Position in the endless stream -> record, epoch by epoch in a seeded permutation.

    Safe to share between reader threads; pickles without its cache (grain workers).
    """

    def __init__(self, seed: int, stream: int | tuple[int, ...], n: int):
        if n <= 0:
            raise ValueError(f"an epoch order needs at least one record, got n={n}")
        self.seed = int(seed)
        self.stream = (int(stream),) if isinstance(stream, (int, np.integer)) else tuple(stream)
        self.n = int(n)
        self._cache: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def permutation(self, epoch: int) -> np.ndarray:
        """The record order of `epoch` (a permutation of range(n))."""
        with self._lock:
            order = self._cache.get(epoch)
            if order is None:
                rng = np.random.default_rng([self.seed, *self.stream, epoch])
                order = rng.permutation(self.n)
                self._cache[epoch] = order
                for old in list(self._cache)[:-KEEP]:  # oldest drawn first
                    del self._cache[old]
            return order

    def index(self, position: int) -> int:
        """The record at `position` of the stream (epoch = position // n)."""
        epoch, within = divmod(int(position), self.n)
        return int(self.permutation(epoch)[within])

    def cached_epochs(self) -> list[int]:
        """The epochs whose orders are held now (oldest drawn first)."""
        with self._lock:
            return list(self._cache)

    def __getstate__(self) -> dict:
        return {"seed": self.seed, "stream": self.stream, "n": self.n}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["seed"], state["stream"], state["n"])
