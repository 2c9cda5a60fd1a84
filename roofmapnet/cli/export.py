"""``roofmap export``: deployable exports of the whole inference pipeline (ONNX, TorchScript, state-dict) + parity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.table import Table

from roofmapnet.cli._common import ConfigOption, console, report_errors
from roofmapnet.errors import RoofMapError

if TYPE_CHECKING:
    from roofmapnet.export.parity import ParityReport

_IO: Final = "Input/Output"
_FORMAT: Final = "Format"
_CHECK: Final = "Parity check"


def print_parity(report: ParityReport) -> None:
    """The parity table (one row per image) and a PASS / FAIL line, on stdout."""
    tol = report.tolerance
    table = Table(
        title=f"parity: {report.label} vs PyTorch eager (|Δscore| ≤ {tol.score:g}, |Δxy| ≤ {tol.coord:g} px)",
        title_justify="left",
    )
    for name, justify in (
        ("image", "left"),
        ("lines eager", "right"),
        ("lines exported", "right"),
        ("matched", "right"),
        ("borderline", "right"),
        ("junctions eager/exported", "right"),
        ("max |Δscore|", "right"),
        ("max |Δxy| px", "right"),
        ("result", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for im in report.images:
        count_ok = im.ref_lines == im.exp_lines
        table.add_row(
            im.name,
            str(im.ref_lines),
            str(im.exp_lines) if count_ok else f"[yellow]{im.exp_lines}[/]",
            str(im.matched),
            str(im.borderline),
            f"{im.ref_junctions}/{im.exp_junctions}",
            f"{im.max_score_diff:.2e}",
            f"{im.max_coord_diff:.2e}",
            "[green]PASS[/]" if im.passed else f"[red]FAIL[/] {im.reason}",
        )
    console.print(table)
    console.print(
        f"eager {report.eager_seconds:.2f} s, exported {report.exported_seconds:.2f} s for {len(report.images)} images; "
        f"thresholds: score {report.score_threshold:g}, junction {report.junction_threshold:g}",
        highlight=False,
    )
    verdict = "[bold green]parity PASS[/]" if report.passed else "[bold red]parity FAIL[/]"
    console.print(f"{verdict}: max |Δscore| {report.max_score_diff:.2e}", highlight=False)


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MiB"


@report_errors
def export_command(
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint",
            "-k",
            help="Weights: our Lightning .ckpt, an exported .pth (+ .json sidecar) or the official .pth.",
            show_default=False,
            rich_help_panel=_IO,
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="onnx (onnxruntime), torchscript (torch.jit) or state-dict (official .pth + .json config).",
            show_default=False,
            rich_help_panel=_FORMAT,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="File to write (state-dict: also OUT.json).", show_default=False, rich_help_panel=_IO
        ),
    ],
    config: ConfigOption = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (13-21).", rich_help_panel=_FORMAT)] = 17,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, or fp16 (half-precision graph / weights, for GPU runtimes; looser parity).",
            rich_help_panel=_FORMAT,
        ),
    ] = "fp32",
    max_junctions: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Cap the junction proposals (bounds the K(K-1)/2 candidate lines, latency and memory). "
            "Default: model.n_dyn_junc.",
            show_default=False,
            rich_help_panel=_FORMAT,
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            help="Device for export and parity: cpu, cuda, cuda:N or auto. TorchScript runs on the device it was "
            "exported on.",
            rich_help_panel=_FORMAT,
        ),
    ] = "cpu",
    parity: Annotated[
        bool,
        typer.Option(
            "--parity/--no-parity",
            help="After writing, compare the export with PyTorch eager on 3 synthetic images; exit 1 on failure.",
            rich_help_panel=_CHECK,
        ),
    ] = True,
) -> None:
    """Export a trained RoofMapNet for deployment: ONNX, TorchScript or a plain official-format state_dict.

    ONNX and TorchScript hold the [bold]whole[/] inference pipeline in one graph: RGB pixels (0-255, float32,
    [B, 3, S, S] at the network input size; normalisation inside) in; padded lines, scores, junctions and
    per-image counts out, in network-input pixels (x, y). Metadata (config, input size, mean/stddev,
    thresholds, versions) travels in the file. After writing, the export is run on synthetic images and
    compared with PyTorch eager (same lines, scores within 1e-4 in fp32); on failure the file is kept for
    inspection, the table shows what differs and the exit code is 1. See docs/export.md.

    [bold]Example[/]: roofmap export -k logs/checkpoints/best-sAP10.ckpt -f onnx -o roofmapnet.onnx
    """
    from roofmapnet.config import load_config
    from roofmapnet.export.api import export_checkpoint

    def written(paths: list[Path], seconds: float) -> None:
        for path in paths:
            console.print(f"wrote [bold]{path}[/] ({_size(path)})", highlight=False)
        console.print(f"export: {fmt} {precision} in {seconds:.1f} s", highlight=False)

    result = export_checkpoint(
        checkpoint,
        fmt,
        out,
        opset=opset,
        precision=precision,
        cfg=load_config(config),
        max_junctions=max_junctions,
        device=device,
        parity=parity,
        on_written=written,
    )
    report = result.parity
    if report is not None:
        print_parity(report)
    if report is not None and not report.passed:
        failed = sum(not im.passed for im in report.images)
        msg = (
            f"parity failed on {failed} of {len(report.images)} images: {out} was written but does not reproduce "
            "PyTorch eager (see the table above)"
        )
        raise RoofMapError(msg)


def register(app: typer.Typer) -> None:
    """Add ``export`` to the root app."""
    app.command("export", rich_help_panel="Inference")(export_command)
