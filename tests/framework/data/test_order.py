"""EpochOrder: the seeded per-epoch record order every builder reads, and its cache."""

import pickle
import threading

import numpy as np
import pytest

from framework.data import order, pipeline


def direct(seed, stream, epoch, n):
    return np.random.default_rng([seed, *stream, epoch]).permutation(n)


def test_orders_are_the_seeded_permutations_of_each_epoch():
    n = 7
    stream_of = {3: (3,), (0, 4): (0, 4)}
    for stream, key in stream_of.items():
        epochs = pipeline.EpochOrder(11, stream, n)
        for epoch in range(4):
            np.testing.assert_array_equal(epochs.permutation(epoch), direct(11, key, epoch, n))
        # Position p of the endless stream is record perm_{p // n}[p % n].
        records = [epochs.index(p) for p in range(3 * n)]
        expected = np.concatenate([direct(11, key, e, n) for e in range(3)])
        assert records == expected.tolist()
        for e in range(3):  # each epoch covers every record once
            assert sorted(records[e * n : (e + 1) * n]) == list(range(n))
    assert order.EpochOrder(1, 2, n).index(0) == int(direct(1, (2,), 0, n)[0])
    # Another seed or stream is another order (for these keys; not equal by construction).
    assert not np.array_equal(order.EpochOrder(1, 2, 50).permutation(0), direct(2, (2,), 0, 50))
    assert not np.array_equal(order.EpochOrder(1, 2, 50).permutation(0), direct(1, (3,), 0, 50))


def test_cache_holds_the_two_most_recently_drawn_epochs():
    epochs = order.EpochOrder(0, 0, 5)
    for position in range(0, 5 * 6):  # six epochs in order
        epochs.index(position)
        assert len(epochs.cached_epochs()) <= order.KEEP
    assert epochs.cached_epochs() == [4, 5]
    epochs.index(7)  # back to epoch 1: drawn again (same order), epoch 4 evicted
    assert epochs.cached_epochs() == [5, 1]
    np.testing.assert_array_equal(epochs.permutation(1), direct(0, (0,), 1, 5))
    first = epochs.permutation(5)
    assert epochs.permutation(5) is first  # a cached epoch is not drawn again
    # A batch straddling two epochs keeps both while it alternates between them.
    straddle = order.EpochOrder(0, 0, 4)
    for position in (2, 4, 3, 5, 3, 6):
        straddle.index(position)
    assert straddle.cached_epochs() == [0, 1]


def test_pickles_without_its_cache_and_is_shared_by_threads():
    epochs = order.EpochOrder(5, (1, 2), 9)
    epochs.permutation(3)
    copy = pickle.loads(pickle.dumps(epochs))  # grain workers receive it pickled
    assert copy.cached_epochs() == []
    assert [copy.index(p) for p in range(40)] == [epochs.index(p) for p in range(40)]
    shared, results = order.EpochOrder(5, 0, 9), {}

    def read(t):
        results[t] = [shared.index(p) for p in range(t, 200, 3)]

    threads = [threading.Thread(target=read, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    alone = order.EpochOrder(5, 0, 9)
    for t, got in results.items():
        assert got == [alone.index(p) for p in range(t, 200, 3)]


def test_needs_records():
    with pytest.raises(ValueError, match="n=0"):
        order.EpochOrder(0, 0, 0)
