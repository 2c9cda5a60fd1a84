"""Read ahead and batch: the one loop that feeds the model, for image files, raster tiles and DDP shards.

:func:`prefetch` loads items ``0..n-1`` in order while up to ``ahead`` later ones load in background threads
(decoding overlaps the model; memory is bounded by ``ahead``).  :func:`batched` groups items into batches of
``size``; an item that cannot run (an empty tile) is passed through on its own at once, so that every
forward pass still gets ``size`` runnable items.  The multi-process path builds its DataLoader's batches with
:func:`batched` too (:mod:`roofmapnet.inference.distributed`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def prefetch(load: Callable[[int], T], n: int, *, threads: int, ahead: int, name: str = "roofmap-load") -> Iterator[T]:
    """Yield ``load(0), ..., load(n - 1)`` in order, computing up to ``ahead`` items ahead in ``threads`` threads.

    Args:
        load: loads one item (runs in a background thread when ``threads`` > 0).
        n: number of items.
        threads: background threads (0: load in the caller's thread, nothing ahead).
        ahead: items in flight (at least 1).
        name: thread name prefix.
    """
    if threads <= 0:
        yield from (load(i) for i in range(n))
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name) as pool:
        pending: deque[Future[T]] = deque(pool.submit(load, i) for i in range(min(max(ahead, 1), n)))
        nxt = len(pending)
        try:
            while pending:
                done = pending.popleft()
                if nxt < n:
                    pending.append(pool.submit(load, nxt))
                    nxt += 1
                yield done.result()
        finally:  # stopped early (an error, a closed generator): drop what has not started
            for fut in pending:
                fut.cancel()


def batched(items: Iterable[T], size: int, *, runnable: Callable[[T], bool] | None = None) -> Iterator[list[T]]:
    """Consecutive batches of ``size`` items (the last may be shorter).

    Args:
        items: the items, in order.
        size: items per batch (at least 1).
        runnable: items it rejects do not take a place in a batch: each is yielded at once as a batch of its own
            (in which nothing runs), ahead of the batch being filled.
    """
    if size < 1:
        msg = f"batch size {size}: must be at least 1"
        raise ValueError(msg)
    batch: list[T] = []
    for item in items:
        if runnable is not None and not runnable(item):
            yield [item]
            continue
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
