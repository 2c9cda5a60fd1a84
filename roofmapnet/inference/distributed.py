"""Multi-process inference with Lightning's predict loop (``roofmap infer --devices N --strategy ddp``).

Every process (rank) discovers the same inputs in the same order, so image ``i`` has the same output name
everywhere; rank ``r`` of ``N`` processes images ``r, r+N, r+2N, ...`` (:class:`ShardSampler`: a strided
split *without* the padding duplicates of ``DistributedSampler``), so each output is written exactly once,
by one process, atomically.  The shard is cut into batches by the same
:func:`~roofmapnet.inference.batching.batched` as the single-process path, decoded by ``workers`` DataLoader
processes per rank, and each batch is predicted and written by
:func:`~roofmapnet.inference.runner.process_batch`.  At the end the ranks exchange their per-image outcomes
(``torch.distributed.all_gather_object``) so every rank returns the same :class:`InferReport` and the same
exit code; only global rank 0 should print it.

On CPU the processes talk through gloo; on CUDA each rank uses its own GPU.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from roofmapnet.config.schema import InferConfig
from roofmapnet.inference.batching import batched
from roofmapnet.inference.images import output_stems
from roofmapnet.inference.outputs.writers import RunInfo
from roofmapnet.inference.predictor import Predictor
from roofmapnet.inference.runner import discover, image_files, prepare_out_dir, process_batch, run_info
from roofmapnet.inference.types import InferReport, LoadedImage, Outcome

#: ``--strategy`` values that run the Lightning predict loop.
STRATEGIES: tuple[str, ...] = ("ddp",)


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` of a dataset of ``size`` items: disjoint shards covering every index once.

    Args:
        size: dataset length.
        rank: this process's global rank.
        world: number of processes.
    """

    def __init__(self, size: int, rank: int, world: int) -> None:
        if world < 1 or not 0 <= rank < world:
            msg = f"ShardSampler: rank {rank} is not in [0, {world})"
            raise ValueError(msg)
        self.indices = range(rank, size, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ShardBatches(Sampler[list[int]]):
    """A rank's shard cut into batches by :func:`~roofmapnet.inference.batching.batched` (a DataLoader batch sampler).

    Args:
        shard: the rank's indices.
        size: images per batch.
    """

    def __init__(self, shard: ShardSampler, size: int) -> None:
        self.shard = shard
        self.size = size

    def __iter__(self) -> Iterator[list[int]]:
        return batched(iter(self.shard), self.size)

    def __len__(self) -> int:
        return -(-len(self.shard) // self.size)


def _as_list(items: list[LoadedImage]) -> list[LoadedImage]:
    return items


IndexedOutcome = tuple[int, Outcome]


class PredictWriter(pl.LightningModule):
    """LightningModule whose ``predict_step`` predicts a shard's batches and writes their outputs.

    Args:
        predictor: the model wrapper (its model becomes this module's ``net``, moved to each rank's device).
        paths: every image of the run (the same list on every rank).
        out_dir: output folder.
        options: run options.
        progress: ``progress(done, total)`` for this rank's shard.
    """

    def __init__(
        self,
        predictor: Predictor,
        paths: Sequence[Path],
        out_dir: Path,
        options: InferConfig,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(predictor.model, torch.nn.Module):
            msg = "multi-process inference runs an eager RoofMapNet, not an exported model"
            raise TypeError(msg)
        self.net = predictor.model
        self.predictor = predictor
        self.paths = list(paths)
        self.stems = output_stems(self.paths)
        self.out_dir = out_dir
        self.options = options
        self.info: RunInfo = run_info(predictor, options)
        self.progress = progress
        self.outcomes: list[IndexedOutcome] = []
        self.model_seconds = 0.0
        self._shard_size = 0

    def predict_dataloader(self) -> DataLoader[Any]:
        """The rank's shard of the images in batches, decoded by ``options.workers`` loader processes."""
        dataset = image_files(self.predictor, self.paths, self.options)
        sampler = ShardSampler(len(dataset), self.global_rank, self.trainer.world_size)
        self._shard_size = len(sampler)
        size = self.options.batch_size or self.predictor.cfg.model.batch_size_eval
        return DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_sampler=ShardBatches(sampler, size),
            num_workers=self.options.workers,
            collate_fn=_as_list,
        )

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Keep the batch as is: :meth:`Predictor.predict <roofmapnet.inference.predictor.Predictor.predict>` moves
        the stacked images itself."""
        return batch

    def on_predict_start(self) -> None:
        """Point the predictor at this rank's device."""
        self.predictor.device = self.device
        self.predictor.model_seconds = 0.0

    def predict_step(self, batch: list[LoadedImage], batch_idx: int) -> None:
        """Predict and write one batch; outcomes are kept for the summary."""
        futures = process_batch(self.predictor, batch, self.stems, self.out_dir, self.options, self.info)
        self.outcomes.extend((item.index, f.result()) for item, f in zip(batch, futures, strict=True))
        if self.progress is not None:
            self.progress(len(self.outcomes), self._shard_size)

    def on_predict_epoch_end(self) -> None:
        """Exchange the outcomes of all ranks (a collective: every rank reaches it)."""
        self.model_seconds = self.predictor.model_seconds
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, (self.outcomes, self.model_seconds))
            self.outcomes = [o for part in gathered for o in part[0]]
            self.model_seconds = float(sum(part[1] for part in gathered))


def run_distributed(
    predictor: Predictor,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    options: InferConfig,
    *,
    devices: int,
    strategy: str = "ddp",
    progress: Callable[[int, int], None] | None = None,
) -> InferReport:
    """Run inference with a Lightning ``Trainer.predict`` over ``devices`` processes.

    Args:
        predictor: the loaded model; its device type selects the accelerator (``cpu`` or ``gpu``).
        inputs: files, folders or glob patterns.
        out_dir: output folder.
        options: run options (``workers`` = DataLoader worker processes per rank).
        devices: number of processes (GPUs on CUDA).
        strategy: a Lightning strategy name from :data:`STRATEGIES`.
        progress: progress callback for rank 0's shard.

    Returns:
        The same merged report on every rank; :attr:`InferReport.global_rank` says which rank this is.
    """
    start = time.perf_counter()
    paths, skipped = discover(inputs, options, predictor.cfg, out_dir)
    out = prepare_out_dir(out_dir)
    device = predictor.device
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    device_arg: int | list[int] = devices
    if device.type == "cuda" and device.index is not None and devices == 1:
        device_arg = [device.index]
    module = PredictWriter(predictor, paths, out, options)
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=device_arg,
        strategy=strategy,
        precision="32-true",  # autocast, if any, is the predictor's
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_nodes=1,
    )
    module.progress = progress if trainer.is_global_zero else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
        warnings.filterwarnings("ignore", message=".*predict returned None.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch ≥ 2.10
        trainer.predict(module, return_predictions=False)
    report = InferReport(out_dir=out, failed=list(skipped), global_rank=trainer.global_rank)
    for _, outcome in sorted(module.outcomes, key=lambda o: o[0]):
        report.add(outcome)
    report.seconds = time.perf_counter() - start
    report.model_seconds = module.model_seconds
    return report
