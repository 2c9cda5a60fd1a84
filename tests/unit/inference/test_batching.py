"""The one read-ahead and batching loop (roofmapnet.inference.batching)."""

from __future__ import annotations

import threading
import time

import pytest

from roofmapnet.inference.batching import batched, prefetch


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_prefetch_yields_in_order_whatever_the_threads(threads: int) -> None:
    def load(i: int) -> int:
        time.sleep(0.002 * ((7 * i) % 3))  # finish out of order
        return i * i

    assert list(prefetch(load, 10, threads=threads, ahead=4)) == [i * i for i in range(10)]
    assert list(prefetch(load, 0, threads=threads, ahead=4)) == []


def test_prefetch_reads_at_most_ahead_items_in_advance() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def load(i: int) -> int:
        with lock:
            started.append(i)
        return i

    it = prefetch(load, 100, threads=2, ahead=5)
    assert next(it) == 0
    time.sleep(0.05)
    with lock:
        assert max(started) <= 5  # item 0 consumed, items 1..5 in flight
    it.close()  # stops early: pending loads are dropped
    time.sleep(0.05)
    with lock:
        assert len(started) <= 7


def test_prefetch_loads_in_the_caller_thread_without_threads() -> None:
    names = list(prefetch(lambda _: threading.current_thread().name, 3, threads=0, ahead=8))
    assert names == [threading.current_thread().name] * 3
    names = list(prefetch(lambda _: threading.current_thread().name, 3, threads=1, ahead=8, name="rm-test"))
    assert all(n.startswith("rm-test") for n in names)


def test_batched_sizes_and_pass_through() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []
    # Rejected items come out alone, at once, and do not take a place in a batch.
    out = list(batched(range(8), 3, runnable=lambda x: x % 3 != 0))
    assert out == [[0], [3], [1, 2, 4], [6], [5, 7]]
    with pytest.raises(ValueError, match="batch size 0"):
        list(batched(range(3), 0))


def test_ddp_shard_batches_come_from_batched() -> None:
    from roofmapnet.inference.distributed import ShardBatches, ShardSampler

    batches = ShardBatches(ShardSampler(7, 1, 2), 2)
    assert list(batches) == [[1, 3], [5]]
    assert len(batches) == 2
    assert list(ShardBatches(ShardSampler(0, 0, 2), 3)) == []
