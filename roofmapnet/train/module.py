"""The Lightning layer of training: a thin LightningModule around the pure RoofMapNet + loss, and the DataModule.

Both classes keep the seed's names and are re-exported by :mod:`roofmapnet.train.main` (the seed's import path);
they live together because the DataModule is a small adapter of :mod:`roofmapnet.data` that the module's
validation step relies on (batch layout, ``content_box``), and neither knows about trainers, callbacks or runs.

The network (:mod:`roofmapnet.models`) and the losses (:mod:`roofmapnet.losses`) stay pure ``nn.Module``s; this
module only wires steps, optimiser, schedule and logging.  Hyper-parameters are the validated config as plain JSON
(``{"config": cfg.model_dump(mode="json")}``) so checkpoints load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from roofmapnet.config import RootConfig, config_from_dict
from roofmapnet.errors import DataError, RoofMapError
from roofmapnet.losses import RoofMapNetLoss
from roofmapnet.losses.objective import batch_losses
from roofmapnet.models.roofmapnet import RoofMapNet
from roofmapnet.utils.rng import capture_rng, restore_rng

#: Loss keys logged under the seed's names (``train/<name>`` and ``val/<name>``).
SEED_LOSS_NAMES = ("jmap_loss", "joff_loss", "lmap_loss", "line_cls_loss", "sf_loss")
#: The six unweighted terms, logged as ``train/loss_<term>``.
TERMS = ("gauss", "qcc", "lhr", "off", "lv", "sf")
#: Flat metric names monitored by checkpointing (a "/" would create sub-folders in checkpoint names).
MONITOR = "val_total_loss"
#: Validation metrics logged as ``val/<name>`` during training.
LOGGED_METRICS = ("sAP5", "sAP10", "sAP15", "msAP")


#: Checkpoint key of the random generators' state (:mod:`roofmapnet.utils.rng`).
RNG_KEY = "roofmapnet_rng"


class NonFiniteLossError(RoofMapError):
    """Training produced NaN or inf; the message names the step and the term."""


class RoofMapNetLightningModule(pl.LightningModule):
    """Training / validation steps, optimiser and schedule for :class:`RoofMapNet`.

    Args:
        config: the configuration as a plain mapping (``RootConfig.model_dump(mode="json")``) or a
            :class:`RootConfig`; ``None`` uses the built-in defaults.
    """

    def __init__(self, config: dict[str, Any] | RootConfig | None = None) -> None:
        super().__init__()
        if isinstance(config, RootConfig):
            cfg = config
        elif config is None:
            cfg = RootConfig()
        else:
            cfg = config_from_dict(config)
        self.cfg = cfg
        self.save_hyperparameters({"config": cfg.model_dump(mode="json")})
        self.model = RoofMapNet(cfg.model)
        if not cfg.loss.gauss_learnable:
            # The Gaussian's α/β stay in the state_dict but are not trained: DDP must not wait for their gradients.
            backbone = self.model.detection.backbone
            backbone.gaussalpha.requires_grad_(False)
            backbone.gaussbeta.requires_grad_(False)
        self.criterion = RoofMapNetLoss(cfg)
        self._evaluator: Any = None

    # ------------------------------------------------------------------ steps
    def forward(self, images: Tensor) -> Any:
        """Inference: per-image :class:`~roofmapnet.models.outputs.Wireframe` list."""
        return self.model.predict(images)

    def _losses(self, batch: dict[str, Any]) -> tuple[dict[str, Tensor], Any]:
        return batch_losses(self.model, self.criterion, batch)

    def _log_losses(self, stage: str, losses: dict[str, Tensor], batch_size: int) -> None:
        on_step = stage == "train"
        names = {f"{stage}/{name}": losses[name] for name in SEED_LOSS_NAMES}
        names[f"{stage}/total_loss"] = losses["total"]
        names.update({f"{stage}/loss_{term}": losses[term] for term in TERMS})
        self.log_dict(
            {k: v.detach() for k, v in names.items()},
            on_step=on_step,
            on_epoch=not on_step,
            batch_size=batch_size,
            sync_dist=not on_step,
        )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step: forward, sampling, verification, six losses."""
        losses, _ = self._losses(batch)
        finite = torch.stack([torch.isfinite(losses[t]).all() for t in (*TERMS, "total")])
        if not bool(finite.all()):
            bad = [t for t, ok in zip((*TERMS, "total"), finite.tolist(), strict=True) if not ok]
            values = ", ".join(f"L_{t}={float(losses[t]):.4g}" for t in bad)
            msg = (
                f"non-finite loss at epoch {self.current_epoch}, global step {self.global_step}: {values} "
                "(lower optim.lr, check the data with `roofmap preprocess`, or use precision 32)"
            )
            raise NonFiniteLossError(msg, fields="precision")
        self._log_losses("train", losses, batch["image"].shape[0])
        return losses["total"]

    def on_train_epoch_start(self) -> None:
        """Log the learning rate once per epoch (the seed's "learning rate per epoch")."""
        opt = self.optimizers()
        if isinstance(opt, list):
            opt = opt[0]
        lr = opt.optimizer.param_groups[0]["lr"] if hasattr(opt, "optimizer") else opt.param_groups[0]["lr"]
        self.log("train/lr", float(lr), on_step=False, on_epoch=True, rank_zero_only=True)

    def on_validation_epoch_start(self) -> None:
        """Start a fresh metric accumulator."""
        from roofmapnet.evaluation.evaluator import Evaluator

        self._evaluator = Evaluator(self.cfg)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Validation losses (model in eval mode) and predictions for sAP."""
        losses, out = self._losses(batch)
        bsz = batch["image"].shape[0]
        self._log_losses("val", losses, bsz)
        self.log(MONITOR, losses["total"].detach(), on_step=False, on_epoch=True, batch_size=bsz, sync_dist=True)
        if self._evaluator is not None:
            self._evaluator.update(self.model, out, batch)

    def on_validation_epoch_end(self) -> None:
        """Gather predictions of all ranks and log sAP5/10/15 (flat ``val_sAP10`` too)."""
        if self._evaluator is None:
            return
        if self.trainer.sanity_checking:
            self._evaluator = None
            return
        self._evaluator.gather()  # every rank gets the union, so every rank logs the same values
        metrics = self._evaluator.compute()
        self._evaluator = None
        for name in LOGGED_METRICS:
            if name in metrics:
                self.log(f"val/{name}", float(metrics[name]), sync_dist=False)
        if "sAP10" in metrics:
            self.log("val_sAP10", float(metrics["sAP10"]), sync_dist=False)

    # ------------------------------------------------------------------ checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the random generators' state, so a resumed run draws what this one would have drawn next."""
        checkpoint[RNG_KEY] = capture_rng()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the generators when training resumes (not when weights are merely loaded)."""
        if RNG_KEY in checkpoint and self._trainer is not None:
            restore_rng(checkpoint[RNG_KEY])

    # ------------------------------------------------------------------ optim
    def configure_optimizers(self) -> Any:
        """Adam / AdamW with amsgrad and weight decay; StepLR every ``lr_decay_epoch`` epochs."""
        o = self.cfg.optim
        cls = torch.optim.Adam if o.name == "Adam" else torch.optim.AdamW
        optimizer = cls(self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.amsgrad)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.lr_decay_epoch, gamma=o.lr_decay_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class RoofMapNetDataModule(pl.LightningDataModule):
    """Train / valid loaders over a preprocessed data root (``roofmap preprocess`` output).

    Args:
        data_root: folder with ``train/`` and ``valid/`` sub-folders of ``<stem>.png`` + ``<stem>_label.npz``.
        cfg: the validated configuration (batch sizes, workers, augmentation).
        seed: base seed of the augmentation / static-line sampling RNG.
    """

    def __init__(self, data_root: str | Path, cfg: RootConfig, seed: int = 0) -> None:
        super().__init__()
        self.data_root = Path(data_root)
        self.cfg = cfg
        self.seed = seed
        self.train_set: Any = None
        self.valid_set: Any = None

    def prepare_data(self) -> None:
        """Check that the preprocessed layout exists (the error names the command that makes it)."""
        check_data_root(self.data_root)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets (each validates its files on access)."""
        from roofmapnet.data.dataset import RoofDataset

        check_data_root(self.data_root)
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = RoofDataset(self.data_root, "train", self.cfg, train=True, seed=self.seed)
        if self.valid_set is None and stage in (None, "fit", "validate"):
            self.valid_set = RoofDataset(self.data_root, "valid", self.cfg, train=False, seed=self.seed)

    def _loader(self, dataset: Any, batch_size: int, shuffle: bool) -> DataLoader[Any]:
        from roofmapnet.data.dataset import collate

        workers = self.cfg.io.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        """Shuffled training loader whose position travels in the checkpoint (exact mid-epoch resume).

        Each epoch's order comes from ``(seed, epoch)`` and each sample's augmentation from ``(seed, epoch, index)``
        (:mod:`roofmapnet.data.loader`); the sampler shards over the trainer's ranks itself.
        """
        from roofmapnet.data.dataset import collate
        from roofmapnet.data.loader import EpochSampler, ResumableLoader

        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        workers = self.cfg.io.num_workers
        return ResumableLoader(
            self.train_set,
            batch_size=self.cfg.model.batch_size,
            sampler=EpochSampler(len(self.train_set), seed=self.seed, num_replicas=world, rank=rank),
            num_workers=workers,
            collate_fn=collate,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
        )

    def val_dataloader(self) -> DataLoader[Any]:
        """Validation loader (``model.batch_size_eval``)."""
        return self._loader(self.valid_set, self.cfg.model.batch_size_eval, shuffle=False)

    def steps_per_epoch(self) -> int:
        """Training batches per epoch (before any device sharding)."""
        self.setup("fit")
        return max(1, math.ceil(len(self.train_set) / self.cfg.model.batch_size))


def check_data_root(root: Path, splits: tuple[str, ...] = ("train", "valid")) -> None:
    """Raise :class:`DataError` naming the problem if ``root`` lacks a preprocessed split."""
    if not root.exists():
        msg = f"{root}: data root not found (make one with `roofmap synth` + `roofmap preprocess`)"
        raise DataError(msg)
    for split in splits:
        folder = root / split
        if not folder.is_dir():
            msg = f"{folder}: split folder missing (run `roofmap preprocess RAW_DIR {root}`)"
            raise DataError(msg)
        if not any(folder.glob("*_label.npz")):
            msg = f"{folder}: no samples (*_label.npz) (run `roofmap preprocess RAW_DIR {root}`)"
            raise DataError(msg)
