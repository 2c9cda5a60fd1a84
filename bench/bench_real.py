"""Real-data benchmark: train a preset on RoofVec for a fixed number of steps and validate along the way.

    python bench/bench_real.py ROOFVEC/SimpleRoofTXT --steps 2000 --eval-at 250,500,1000,2000 --out runs/real
    python bench/bench_real.py --data-root /data/rv256 --minutes 60 --eval-every 500 --init-from synth.ckpt
    nox -s bench_real -- --data-root /data/rv256 --steps 200 --eval-every 100

``ROOFVEC`` is the raw ``SimpleRoofTXT`` folder of a RoofVec checkout (``train/``, ``val/``); it is preprocessed
once with ``roofmap preprocess --format roofvec``'s core into a cache folder outside the repository
(``--cache``, default ``$XDG_CACHE_HOME/roofmapnet/bench_real``), at the preset's image and heatmap sizes and
``data.resize`` mode.  ``--data-root`` takes an already preprocessed data root instead (any data, e.g. synthetic
roofs for a pre-training run).  Nothing is downloaded: the data stays where it is and is never copied into
the repository.

At each step of ``--eval-at`` / ``--eval-every`` (and at the last step) the training pauses and the model is
validated on the ``valid`` split with ``roofmap validate``'s core (sAP5/10/15, msAP, mAP^J, AP^H/F^H, losses); the
RNG states are restored afterwards, so where the evaluations fall does not change the training.  ``--minutes``
bounds the *training* time (evaluations excluded).  Written to ``--out``: ``bench_real.json`` (every evaluation,
steps/s, peak RSS, CPU model, command, config), ``learning_curve.png``, ``eval/step_NNNNNN/`` (each evaluation's
``metrics.json`` and PR plot), ``checkpoints/step_NNNNNN.ckpt`` and the run's TensorBoard events.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pytorch_lightning as pl
import torch

from roofmapnet.config import RootConfig, load_config
from roofmapnet.errors import RoofMapError
from roofmapnet.utils.io import atomic_write_text
from roofmapnet.utils.memory import peak_rss_mib

REPO = Path(__file__).resolve().parents[1]
PRESETS = {"small": REPO / "config" / "presets" / "small.yaml", "default": REPO / "config" / "config.yaml"}
#: Metrics drawn on the learning curve (all of them are in bench_real.json).
CURVE_METRICS = ("sAP5", "sAP10", "sAP15", "msAP", "mAPJ", "APH", "FH")
RESULT_FILE = "bench_real.json"
CURVE_FILE = "learning_curve.png"


# ------------------------------------------------------------------------------------------------------ data
def default_cache() -> Path:
    """``$XDG_CACHE_HOME/roofmapnet/bench_real`` (``~/.cache/...``): preprocessed RoofVec, outside the repository."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "roofmapnet" / "bench_real"


def cache_dir(raw: Path, cfg: RootConfig, cache: Path) -> Path:
    """The cache folder of ``raw`` preprocessed for ``cfg`` (one per source folder, sizes and resize mode)."""
    m = cfg.model
    key = hashlib.sha1(str(raw.resolve()).encode()).hexdigest()[:10]
    return cache / f"roofvec-{key}-{m.image_size}-{m.heatmap_size}-{cfg.data.resize}"


def prepare_roofvec(raw: Path, cfg: RootConfig, cache: Path, workers: int) -> Path:
    """Preprocess the RoofVec folder ``raw`` into the cache once (a marker file records a finished run)."""
    from roofmapnet.data.preprocess import PreprocessOptions, preprocess

    try:
        from roofmapnet.data.formats import FORMAT_NAMES
    except ImportError:
        FORMAT_NAMES = ()
    if "roofvec" not in FORMAT_NAMES:
        msg = (
            f"{raw}: this roofmapnet cannot read RoofVec yet (no `roofmap preprocess --format roofvec`): "
            "preprocess it elsewhere and pass --data-root"
        )
        raise RoofMapError(msg)
    out = cache_dir(raw, cfg, cache)
    marker = out / ".bench_real-complete.json"
    if marker.is_file():
        print(f"preprocessed RoofVec: {out} (cached)", flush=True)
        return out
    print(f"preprocessing {raw} → {out}", flush=True)
    options = PreprocessOptions(
        image_size=cfg.model.image_size,
        heatmap_size=cfg.model.heatmap_size,
        raw_format="roofvec",  # type: ignore[arg-type]
        workers=workers,
        skip_existing=True,
        resize=cfg.data.resize,
        fill=cfg.model.image.mean,
    )
    t0 = time.perf_counter()
    summary = preprocess(raw, out, options, show_progress=sys.stderr.isatty())
    counts = {split: vars(c) for split, c in summary.counts.items()}
    for split, file, reason in summary.failures[:20]:
        print(f"  failed {split} {file}: {reason}", file=sys.stderr)
    info = {"source": str(raw.resolve()), "counts": counts, "failures": len(summary.failures)}
    info["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_text(marker, json.dumps(info, indent=2) + "\n")
    print(f"preprocessed: {counts} ({len(summary.failures)} failures)", flush=True)
    return out


# ------------------------------------------------------------------------------------------------- schedule
def eval_steps(steps: int, eval_at: str | None, eval_every: int | None) -> list[int]:
    """The sorted step counts at which to validate (always including the last step ``steps``)."""
    chosen: set[int] = {steps}
    if eval_at:
        try:
            chosen |= {int(s) for s in eval_at.split(",") if s.strip()}
        except ValueError:
            raise SystemExit(f"--eval-at {eval_at!r}: expected comma-separated step counts, e.g. 250,500") from None
    if eval_every:
        chosen |= set(range(eval_every, steps + 1, eval_every))
    bad = sorted(s for s in chosen if not 0 < s <= steps)
    if bad:
        raise SystemExit(f"--eval-at: step {bad[0]} is outside 1..{steps} (--steps)")
    return sorted(chosen)


class _RngState:
    """Python, numpy and torch RNG states, saved and restored around an evaluation."""

    def __init__(self) -> None:
        self.python = random.getstate()
        self.numpy = np.random.get_state()  # noqa: NPY002 (the legacy global RNG is what workers seed)
        self.torch = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)  # noqa: NPY002
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


class EvalAtSteps(pl.Callback):
    """Pause training at the given steps (or when the training-time budget is spent) and validate.

    Args:
        steps: global steps to validate at.
        cfg: the run's config.
        data_root: preprocessed data with ``valid/``.
        out: the benchmark folder.
        minutes: training-time budget (evaluations excluded), or ``None``.
        val_limit: validate on the first this many images only.
        on_eval: called with the list of evaluations after each one (writes the JSON and the plot).
    """

    def __init__(
        self,
        steps: list[int],
        cfg: RootConfig,
        data_root: Path,
        out: Path,
        *,
        minutes: float | None,
        val_limit: int | None,
        on_eval: Any,
    ) -> None:
        self.steps = set(steps)
        self.cfg = cfg
        self.data_root = data_root
        self.out = out
        self.budget_s = minutes * 60 if minutes else None
        self.val_limit = val_limit
        self.on_eval = on_eval
        self.evaluations: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.eval_seconds = 0.0
        self._since = 0.0
        self._done: set[int] = set()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = time.perf_counter()
        self.train_seconds += now - self._since
        step = trainer.global_step
        over = self.budget_s is not None and self.train_seconds >= self.budget_s
        if over:
            trainer.should_stop = True
        if (step in self.steps or over) and step not in self._done:
            self.evaluate(trainer, pl_module, step, stopped_by_budget=over and step not in self.steps)
        self._since = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step  # e.g. the epochs ran out before --steps: measure where it stopped
        if step > 0 and step not in self._done:
            self.evaluate(trainer, pl_module, step, stopped_by_budget=False)

    def evaluate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, *, stopped_by_budget: bool
    ) -> None:
        from roofmapnet.evaluation.validate import ValidateOptions, run_validation

        self._done.add(step)
        rng = _RngState()
        t0 = time.perf_counter()
        folder = self.out / "eval" / f"step_{step:06d}"
        options = ValidateOptions(split="valid", device=str(pl_module.device), limit=self.val_limit)
        report = run_validation(pl_module.model, self.cfg, self.data_root, folder, options)  # type: ignore[arg-type]
        trainer.save_checkpoint(self.out / "checkpoints" / f"step_{step:06d}.ckpt", weights_only=True)  # + config
        pl_module.train()
        rng.restore()
        seconds = time.perf_counter() - t0
        self.eval_seconds += seconds
        metrics = {k: v for k, v in report.metrics.items() if isinstance(v, (int, float))}
        entry = {
            "step": step,
            "epoch": trainer.current_epoch,
            "train_seconds": round(self.train_seconds, 2),
            "steps_per_second": step / self.train_seconds if self.train_seconds > 0 else None,
            "eval_seconds": round(seconds, 2),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "stopped_by_budget": stopped_by_budget,
            "metrics": metrics,
        }
        self.evaluations.append(entry)
        shown = ", ".join(f"{k} {metrics[k]:.1f}" for k in ("sAP5", "sAP10", "sAP15", "msAP") if k in metrics)
        print(f"step {step}: {shown} (train {self.train_seconds / 60:.1f} min, eval {seconds:.0f} s)", flush=True)
        self.on_eval(self.evaluations)


# -------------------------------------------------------------------------------------------------- outputs
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The repository's commit (``None`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def plot_learning_curve(evaluations: list[dict[str, Any]], path: Path, title: str) -> None:
    """Validation metrics against training steps, as a PNG."""
    from roofmapnet.evaluation.plots import plot_curves

    steps = [e["step"] for e in evaluations]
    curves = {
        name: (steps, [e["metrics"][name] for e in evaluations])
        for name in CURVE_METRICS
        if all(name in e["metrics"] for e in evaluations)
    }
    top = max([v for _, ys in curves.values() for v in ys] + [10.0])
    plot_curves(
        curves,
        path,
        title,
        x_label="training step",
        y_label="validation score (%)",
        x_range=(0, max([*steps, 1])),
        y_range=(0, min(100.0, 10 * np.ceil(top / 10 + 0.5))),
        markers=True,
        legend="lower right",
    )


# ----------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("roofvec", nargs="?", type=Path, help="RoofVec SimpleRoofTXT folder (train/, val/)")
    parser.add_argument("--data-root", type=Path, help="an already preprocessed data root (train/, valid/) instead")
    parser.add_argument("--preset", default="small", help="small, default, or a config YAML (default: small)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    parser.add_argument("--eval-at", help="comma-separated steps to validate at, e.g. 250,500,1000")
    parser.add_argument("--eval-every", type=int, help="validate every N steps")
    parser.add_argument("--minutes", type=float, help="training-time budget (evaluations excluded)")
    parser.add_argument("--init-from", type=Path, help="start from these weights (roofmap train --init-from)")
    parser.add_argument("--partial", action="store_true", help="with --init-from: load what matches")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_real"), help="output folder")
    parser.add_argument("--cache", type=Path, default=None, help="cache of preprocessed RoofVec folders")
    parser.add_argument("--val-limit", type=int, help="validate on the first N valid images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader / preprocessing workers (default 1)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--gpus", type=int, default=None, help="0 = CPU (default: a GPU if present)")
    args = parser.parse_args(argv)
    if (args.roofvec is None) == (args.data_root is None):
        parser.error("give either a RoofVec folder or --data-root")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate as ``args`` say; returns (and writes) the result document."""
    from roofmapnet.cli.train import parse_set_options
    from roofmapnet.train.main import train

    if args.threads:
        torch.set_num_threads(args.threads)
    preset = PRESETS.get(args.preset, Path(args.preset))
    out = args.out.resolve()
    overrides = {
        **parse_set_options(args.overrides),
        "io.logdir": out / "train",
        "io.num_workers": args.workers,
        "io.validation_interval": 10**9,  # the benchmark validates itself, at the requested steps
        "optim.max_epoch": 10**4,  # --steps / --minutes bound the run
    }
    cfg = load_config(preset, overrides)
    if args.data_root is not None:
        data = args.data_root.resolve()
    else:
        data = prepare_roofvec(args.roofvec, cfg, args.cache or default_cache(), max(1, args.workers))
    cfg = load_config(preset, {**overrides, "io.datadir": data})
    schedule = eval_steps(args.steps, args.eval_at, args.eval_every)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    document: dict[str, Any] = {
        "benchmark": "bench_real",
        "command": shlex.join([sys.executable, *sys.argv]),
        "started_utc": started,
        "git_commit": git_commit(),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.gpus != 0 else None,
        },
        "data_root": str(data),
        "source": str(args.roofvec.resolve()) if args.roofvec else None,
        "preset": str(preset),
        "steps": args.steps,
        "eval_at": schedule,
        "minutes": args.minutes,
        "init_from": str(args.init_from) if args.init_from else None,
        "overrides": parse_set_options(args.overrides),
        "config": cfg.model_dump(mode="json"),
        "evaluations": [],
    }
    title = f"{Path(str(preset)).stem} on {data.name}" + (" (fine-tuned)" if args.init_from else "")

    def write(evaluations: list[dict[str, Any]]) -> None:
        document["evaluations"] = evaluations
        document["peak_rss_mib"] = round(peak_rss_mib(), 1)
        atomic_write_text(out / RESULT_FILE, json.dumps(document, indent=2) + "\n")
        plot_learning_curve(evaluations, out / CURVE_FILE, title)

    callback = EvalAtSteps(schedule, cfg, data, out, minutes=args.minutes, val_limit=args.val_limit, on_eval=write)
    wall = time.perf_counter()
    result = train(
        cfg=cfg,
        gpus=args.gpus,
        seed=args.seed,
        max_steps=args.steps,
        limit_val_batches=0,  # no Lightning validation loop: EvalAtSteps measures
        callbacks=[callback],
        progress=False,
        init_from=args.init_from,
        partial=args.partial,
    )
    document["final_step"] = result.global_step
    document["train_seconds"] = round(callback.train_seconds, 1)
    document["eval_seconds"] = round(callback.eval_seconds, 1)
    document["wall_seconds"] = round(time.perf_counter() - wall, 1)
    document["steps_per_second"] = result.global_step / callback.train_seconds if callback.train_seconds else None
    if result.init_report is not None:
        document["init_report"] = result.init_report.to_dict()
    best = max(callback.evaluations, key=lambda e: e["metrics"].get("sAP10", -1.0), default=None)
    document["best"] = {"step": best["step"], "sAP10": best["metrics"].get("sAP10")} if best else None
    write(callback.evaluations)
    print(f"wrote {out / RESULT_FILE} and {out / CURVE_FILE}", flush=True)
    return document


def main(argv: list[str] | None = None) -> int:
    """Command-line entry (``python bench/bench_real.py``, ``nox -s bench_real``)."""
    args = parse_args(argv)
    try:
        run(args)
    except RoofMapError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
