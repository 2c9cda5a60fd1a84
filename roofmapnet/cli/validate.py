"""``roofmap validate``: losses, sAP/msAP/sF, mAP^J, AP^H/F^H of a checkpoint on a preprocessed split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from roofmapnet.cli._common import ConfigOption, console, err_console, report_errors

#: Rows of the summary table: (metrics.json key, label).
TABLE_ROWS = (
    ("loss_gauss", "L_gauss"),
    ("loss_qcc", "L_qcc"),
    ("loss_lhr", "L_lhr"),
    ("loss_off", "L_off"),
    ("loss_lv", "L_lv"),
    ("loss_sf", "L_sf"),
    ("loss_total", "total loss"),
    ("sAP5", "sAP5"),
    ("sAP10", "sAP10"),
    ("sAP15", "sAP15"),
    ("msAP", "msAP"),
    ("sF10", "sF10"),
    ("mAPJ", "mAP^J"),
    ("APH", "AP^H"),
    ("FH", "F^H"),
    ("facet_precision", "facet P (IoU 0.7)"),
    ("facet_recall", "facet R (IoU 0.7)"),
    ("images_per_second", "images/s"),
)


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """A rich table of the headline metrics."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in TABLE_ROWS:
        if key in metrics and metrics[key] is not None:
            table.add_row(
                label, f"{float(metrics[key]):.4f}" if key.startswith("loss") else f"{float(metrics[key]):.2f}"
            )
    return table


@report_errors
def validate_command(
    checkpoint: Annotated[
        Path, typer.Option(help="Our .ckpt, an exported state-dict, or the official .pth.", rich_help_panel="Model")
    ],
    data_root: Annotated[
        Path, typer.Option(help="Preprocessed data root (with the split's folder).", rich_help_panel="Data")
    ],
    split: Annotated[str, typer.Option(help="Split to evaluate: valid or test.", rich_help_panel="Data")] = "valid",
    config: ConfigOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default: <checkpoint folder>/validate-<split>).", rich_help_panel="Output"),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel="Performance")] = "auto",
    precision: Annotated[
        str, typer.Option(help="32, bf16 (autocast) or 16 (CUDA autocast).", rich_help_panel="Performance")
    ] = "32",
    batch_size: Annotated[
        int | None, typer.Option(help="Default: model.batch_size_eval.", rich_help_panel="Performance")
    ] = None,
    num_workers: Annotated[int, typer.Option(help="DataLoader workers.", rich_help_panel="Performance")] = 0,
    save_predictions: Annotated[
        bool, typer.Option(help="Also write per-image predictions (JSON).", rich_help_panel="Output")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N images.", rich_help_panel="Data")] = None,
    facets: Annotated[
        bool | None,
        typer.Option(
            "--facets/--no-facets",
            help="Facet region precision / recall at IoU 0.7 (HEAT). Default: on when shapely (geo extra) is installed.",
            rich_help_panel="Metrics",
        ),
    ] = None,
    facet_threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Line score above which lines form facets (default: model.line_score_thres).",
            rich_help_panel="Metrics",
        ),
    ] = None,
) -> None:
    """Measure a model on a preprocessed split: the six losses, sAP5/10/15, msAP, mAP^J, AP^H, F^H, facet P/R.

    Writes OUT/metrics.json and OUT/pr_curve.png (sAP precision-recall curves at the three thresholds).

    Example: [bold]roofmap validate --checkpoint runs/exp1/checkpoints/best-sAP10.ckpt --data-root data/roofs --split test[/]
    """
    from roofmapnet.config import load_config
    from roofmapnet.evaluation.validate import ValidateOptions, check_split, run_validation
    from roofmapnet.models.loading import load_model

    check_split(split)
    cfg = load_config(config) if config is not None else None
    model, cfg = load_model(checkpoint, device="cpu", cfg=cfg)
    out_dir = out if out is not None else checkpoint.parent / f"validate-{split}"
    options = ValidateOptions(
        split=split,
        device=device,
        precision=precision,
        batch_size=batch_size,
        num_workers=num_workers,
        save_predictions=save_predictions,
        limit=limit,
        facets=facets,
        facet_threshold=facet_threshold,
    )
    with Progress(
        TextColumn("[bold]validate[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    ) as bar:
        task = bar.add_task("images", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = run_validation(model, cfg, data_root, out_dir, options, checkpoint=checkpoint, progress=update)
    console.print(metrics_table(report.metrics, f"{checkpoint.name} on {split} ({report.images} images)"))
    console.print(f"metrics: {report.metrics_path}")
    if report.plot_path is not None:
        console.print(f"PR curves: {report.plot_path}")
    if report.predictions_dir is not None:
        console.print(f"predictions: {report.predictions_dir}")


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the root app."""
    app.command("validate", rich_help_panel="Evaluation")(validate_command)
