"""A training DataLoader whose position travels in the checkpoint, so a run resumed mid-epoch is exact.

:class:`EpochSampler` draws each epoch's order from ``(seed, epoch)`` alone and yields :class:`SampleKey`
``(index, epoch)`` items; :class:`~roofmapnet.data.dataset.RoofDataset` derives a training sample's augmentation
and static-line draws from ``(seed, epoch, index)``, never from a generator whose state depends on how far a
process got.  :class:`ResumableLoader` counts the batches it has handed out in the current epoch and implements
``state_dict`` / ``load_state_dict``: Lightning stores that state in the checkpoint (``loops.fit_loop.state_dict.
combined_loader``) for any loader with these two methods, and gives it back on resume before the first batch is
drawn.  The resumed loader skips the batches already trained on by index (nothing is decoded for them), so an
interrupted and resumed run sees the same batches, with the same augmentation, as an uninterrupted one.

The sampler also shards for distributed training (it is a :class:`DistributedSampler`, so Lightning leaves it in
place): every rank draws the same epoch order and takes every ``world_size``-th key, padded to equal length.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

#: ``state_dict()["format"]`` of :class:`ResumableLoader`.
STATE_FORMAT = "roofmapnet-loader-1"


class SampleKey(NamedTuple):
    """What :class:`EpochSampler` yields: a dataset index and the epoch it is drawn for."""

    item: int
    epoch: int


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The order of ``n`` indices in ``epoch``: a permutation drawn from ``(seed, epoch)`` only (or ``0..n-1``)."""
    if not shuffle:
        return list(range(n))
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=gen).tolist()


class EpochSampler(DistributedSampler[SampleKey]):  # type: ignore[type-var]
    """Per-epoch order from ``(seed, epoch)``, sharded over ``num_replicas`` ranks, resumable at a sample offset.

    Args:
        size: dataset length.
        seed: base seed of the order.
        shuffle: draw a new permutation each epoch (else ``0..size-1``).
        num_replicas: ranks sharing the data (1 without distributed training).
        rank: this process's rank.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, num_replicas: int = 1, rank: int = 0) -> None:
        if size < 1:
            msg = "EpochSampler needs a non-empty dataset"
            raise ValueError(msg)
        # DistributedSampler's __init__ reads the process group only when num_replicas / rank are None.
        super().__init__(
            range(size),  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=False,
        )
        self.size = size
        self.num_samples = math.ceil(size / num_replicas)
        self.total_size = self.num_samples * num_replicas
        #: keys of the next epoch pass to skip (set by :meth:`skip`, used once).
        self._skip = 0

    def skip(self, samples: int) -> None:
        """Leave out the first ``samples`` keys of the next pass (they were trained on before an interruption)."""
        self._skip = max(0, int(samples))

    def __iter__(self) -> Iterator[SampleKey]:
        order = epoch_order(self.size, self.seed, self.epoch, self.shuffle)
        if self.total_size > self.size:  # pad by wrapping around, like DistributedSampler
            order += (order * math.ceil(self.total_size / self.size))[: self.total_size - self.size]
        mine = order[self.rank : self.total_size : self.num_replicas]
        start, self._skip = self._skip, 0
        epoch = self.epoch
        return (SampleKey(i, epoch) for i in mine[start:])

    def __len__(self) -> int:
        return self.num_samples


class ResumableLoader(DataLoader[Any]):
    """A :class:`DataLoader` over an :class:`EpochSampler` whose position is saved and restored (Lightning's
    stateful-loader protocol: ``state_dict`` / ``load_state_dict``).

    Workers, pinning and collation are those of :class:`DataLoader`; worker seeds come from a generator of the
    loader's own (seeded from ``seed``), so building an iterator never draws from torch's global generator, which
    the model's line sampler uses and the checkpoint restores.
    """

    def __init__(self, dataset: Dataset[Any], *, batch_size: int, sampler: EpochSampler, **kwargs: Any) -> None:
        kwargs.setdefault("generator", torch.Generator().manual_seed(sampler.seed))
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=False, **kwargs)
        self.epoch_sampler = sampler
        self._batches = 0  # batches handed out in the current pass, counting those skipped on resume
        self._resume_batches = 0

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        start, self._resume_batches = self._resume_batches, 0
        self.epoch_sampler.skip(start * int(self.batch_size or 1))
        self._batches = start
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: epoch, batches handed out in it, and what they depend on (for a check)."""
        s = self.epoch_sampler
        return {
            "format": STATE_FORMAT,
            "epoch": int(s.epoch),
            "batches": int(self._batches),
            "seed": int(s.seed),
            "size": int(s.size),
            "batch_size": int(self.batch_size or 1),
            "num_replicas": int(s.num_replicas),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``: the next pass is ``state["epoch"]`` without its first ``state["batches"]``.

        A state of another dataset size, batch size, seed or world size cannot be continued exactly: the loader
        then warns and starts the epoch from its first batch.
        """
        s = self.epoch_sampler
        mine = {"seed": s.seed, "size": s.size, "batch_size": self.batch_size or 1, "num_replicas": s.num_replicas}
        if state.get("format") != STATE_FORMAT or any(state.get(k) != v for k, v in mine.items()):
            theirs = {k: state.get(k) for k in mine}
            warnings.warn(
                f"the checkpoint's data position ({theirs}) does not fit this run ({mine}): the epoch restarts at its "
                "first batch",
                stacklevel=2,
            )
            return
        batches = int(state["batches"])
        if batches >= len(self):  # saved at the end of an epoch: the next pass is the next epoch
            s.set_epoch(int(state["epoch"]) + 1)
            self._resume_batches = 0
        else:
            s.set_epoch(int(state["epoch"]))
            self._resume_batches = batches
