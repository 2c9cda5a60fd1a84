"""The user's TRAINING_MODULE.md keeps its promises: its example session, flags, API, metric and checkpoint names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from roofmapnet.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, check=False)


def test_example_training_session(tiny_raw: Path, tiny_config_path: Path, tmp_path: Path) -> None:
    """ "Example Training Session": preprocess_rid2 per split, python -m train.main, then --resume-from."""
    data = tmp_path / "data"
    for split in ("train", "valid"):
        proc = _run(
            "-m", "roofmapnet.train.preprocess_rid2", "--input", str(tiny_raw / f"{split}.json"),
            "--output", str(data / split), "--image-size", "64",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert len(list((data / split).glob("*_label.npz"))) == len(list((data / split).glob("*.png"))) > 0
    logs = tmp_path / "logs"
    common = ["-m", "roofmapnet.train.main", "--config", str(tiny_config_path), "--data-root", str(data)]
    proc = _run(*common, "--gpus", "0", "--precision", "32", "--max-epochs", "1", "--logdir", str(logs))
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = logs / "checkpoints" / "last.ckpt"
    best = [p.name for p in (logs / "checkpoints").glob("roofmapnet-epoch=*-val_total_loss=*.ckpt")]
    assert last.is_file()
    assert best
    # "To resume training": --resume-from logs/checkpoints/last.ckpt --data-root data/
    proc = _run(*common, "--gpus", "0", "--resume-from", str(last), "--max-epochs", "2", "--logdir", str(logs))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1  # end of the second epoch


def test_seed_inference_snippet_and_config_keys(tiny_config_path: Path, tmp_path: Path) -> None:
    """The "Inference" snippet (load_from_checkpoint) and the documented config keys."""
    from roofmapnet.models.roofmapnet import RoofMapNet
    from roofmapnet.train.main import RoofMapNetLightningModule

    module = RoofMapNetLightningModule(load_config(tiny_config_path))
    path = tmp_path / "model.ckpt"
    import pytorch_lightning as pl

    ckpt = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save({**ckpt, "pytorch-lightning_version": pl.__version__}, path)
    loaded = RoofMapNetLightningModule.load_from_checkpoint(path)
    loaded.eval()
    assert isinstance(loaded.model, RoofMapNet)
    cfg = load_config(REPO / "config" / "config.yaml")
    documented = {
        "io": ("logdir", "datadir", "num_workers", "validation_interval"),
        "model": ("batch_size", "batch_size_eval", "depth", "num_stacks", "num_blocks", "n_stc_posl", "n_stc_negl",
                  "n_dyn_junc", "dim_loi", "dim_fc"),
        "optim": ("name", "lr", "weight_decay", "amsgrad", "max_epoch", "lr_decay_epoch"),
    }  # fmt: skip
    for section, keys in documented.items():
        for key in keys:
            assert hasattr(getattr(cfg, section), key), f"{section}.{key}"
