"""The callbacks and the checkpoint writer of a training run (what :func:`~roofmapnet.train.trainer.build_trainer`
installs): the seed's checkpoints plus ``best-sAP10.ckpt``, atomic checkpoint files, a resumable checkpoint on
SIGTERM, and plain progress lines for logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import SIGTERMException

from roofmapnet.errors import CheckpointError
from roofmapnet.train.module import MONITOR
from roofmapnet.utils.io import atomic_path

#: Checkpoint file name pattern of the seed, e.g. ``roofmapnet-epoch=07-val_total_loss=0.9685.ckpt``.
CHECKPOINT_PATTERN = "roofmapnet-epoch={epoch:02d}-val_total_loss={val_total_loss:.4f}"
#: The checkpoint of the highest validation sAP10 so far (``checkpoints/best-sAP10.ckpt``), next to the seed's ones.
BEST_SAP_FILENAME = "best-sAP10"
BEST_SAP_MONITOR = "val/sAP10"


def checkpoint_callbacks(run_dir: Path) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """The seed's checkpoints (``last.ckpt`` and the 3 best by validation total loss) and ``best-sAP10.ckpt``."""
    seed = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename=CHECKPOINT_PATTERN,
        auto_insert_metric_name=False,
        monitor=MONITOR,
        mode="min",
        save_top_k=3,
        save_last=True,
    )
    best_sap = ModelCheckpoint(  # the pick for evaluation and deployment: wireframe quality, not the loss
        dirpath=run_dir / "checkpoints",
        filename=BEST_SAP_FILENAME,
        auto_insert_metric_name=False,
        monitor=BEST_SAP_MONITOR,
        mode="max",
        save_top_k=1,
        enable_version_counter=False,
    )
    return seed, best_sap


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints to a temporary file and rename, so a kill never leaves a truncated ``last.ckpt``.

    A write that fails (disk full, directory made read-only, quota) is a :class:`CheckpointError` naming the file
    and the reason; the earlier checkpoint of that name is untouched and no temporary file is left.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Save ``checkpoint`` to ``path`` atomically."""
        target = Path(path)
        try:
            with atomic_path(target) as tmp:
                super().save_checkpoint(checkpoint, tmp, storage_options)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            kept = " (the previous one is kept)" if target.is_file() else ""
            msg = f"{target}: cannot write the checkpoint: {reason}{kept}"
            raise CheckpointError(msg) from None


class SaveOnSigterm(Callback):
    """On SIGTERM (what schedulers send before killing a job) write a resumable ``last.ckpt`` before exiting.

    Lightning finishes the running batch and raises ``SIGTERMException``; the checkpoint is written then, so it
    holds the loop position, the data position and the generators' state of a finished step.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Save when the exception is the SIGTERM one."""
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)


class FinalStep(Callback):
    """Validate after the run's last training step, so that ``last.ckpt`` holds the final weights and
    ``best-sAP10.ckpt`` has seen them.

    Lightning writes checkpoints when it validates.  A run that ends on ``max_steps`` or at the end of its last
    epoch between two validations would otherwise end with a ``last.ckpt`` of the previous validation: the steps in
    between were trained and then lost (a ``--max-steps 1200`` run with validations every 300 steps of a 750-step
    epoch ended with the weights of step 1,050).  Asking the loop to stop at that step makes it validate there
    (the path early stopping takes); on a validation step it changes nothing.  A ``max_time`` stop already goes
    through that path.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Request the stop (and so the validation) on the last step of the run."""
        last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        epoch_loop = trainer.fit_loop.epoch_loop
        max_epochs = trainer.max_epochs
        last_epoch = (
            max_epochs is not None
            and max_epochs > 0
            and trainer.current_epoch + 1 >= max_epochs
            and epoch_loop.batch_progress.is_last_batch
        )
        if last_step or last_epoch:
            trainer.should_stop = True


class PlainProgress(Callback):
    """Periodic one-line progress for logs (used when stdout is not a terminal)."""

    def __init__(self, every: int = 50) -> None:
        self.every = every

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        """Print a line every ``every`` steps."""
        step = trainer.global_step
        if trainer.is_global_zero and step % self.every == 0:
            loss = trainer.callback_metrics.get("train/total_loss")
            text = f"{float(loss):.4f}" if loss is not None else "n/a"
            print(f"epoch {trainer.current_epoch} step {step} total_loss {text}", flush=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Print the validation summary."""
        if trainer.is_global_zero and not trainer.sanity_checking:
            m = trainer.callback_metrics
            parts = [f"{k} {float(m[k]):.4f}" for k in (MONITOR, BEST_SAP_MONITOR) if k in m]
            print(
                f"validation epoch {trainer.current_epoch} step {trainer.global_step}: " + ", ".join(parts), flush=True
            )
