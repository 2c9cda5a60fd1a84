"""Helpers shared by the CLI commands: consoles, error reporting, common option types."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from roofmapnet.errors import RoofMapError

#: Human-facing output (tables, summaries).
console = Console()
#: Errors and notices.
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def report_errors(func: F) -> F:
    """Turn :class:`RoofMapError` into ``error: …`` lines on stderr and its exit code, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RoofMapError as exc:
            for line in exc.lines:
                err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def notice(message: str) -> None:
    """Print a one-line notice to stderr."""
    err_console.print(f"[cyan]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def default_config_path() -> Path | None:
    """``config/config.yaml`` in the current directory if it exists, else ``None`` (built-in defaults)."""
    from roofmapnet.config import DEFAULT_CONFIG_PATH

    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file. Default: config/config.yaml if present, else the built-in defaults.",
        dir_okay=False,
        rich_help_panel="Configuration",
    ),
]


def is_tty() -> bool:
    """Whether stdout is an interactive terminal (decides rich progress vs plain log lines)."""
    return sys.stdout.isatty()
