"""Between the host and the mesh: sharded batches in ahead of use, results out as numpy.

Shared by the training loop and the evaluators (`framework.train.evaluators`), which
both feed host batches to jitted steps and read replicated results back.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from framework.data import pipeline


def prefetch(batches: Iterator[pipeline.Batch], mesh: Mesh, size: int = 2) -> Iterator[Any]:
    """Shards host batches onto the mesh in a background thread, `size` ahead."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for batch in batches:
                if stop.is_set():
                    return
                buffer.put(pipeline.shard_batch(batch, mesh))
            buffer.put(done)
        except BaseException as e:  # surfaced in the consumer
            buffer.put(e)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def to_host(tree: Any) -> Any:
    """Numpy copies of replicated arrays (also those spanning other processes' devices)."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)
        return np.asarray(x)

    return jax.tree.map(get, tree)
